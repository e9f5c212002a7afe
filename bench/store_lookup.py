"""How long `plan` takes to look up 5,000 nodes in a results store of 50,000 entries (issue 26).

A 5,000-job plan (bench/plan_scale.py's grid: 1,000 runs, each fine-tuned for 2 epochs and
evaluated at both on 2 tasks), with a stand-in model folder and a real dataset file so that every
node has a key. The store is filled with 50,000 entries laid out as `Store.publish` lays them out
(entries/<k2>/<key>/meta.json, files/, users/, near/ index): half of the plan's nodes are there
(reused), the other half have a near entry with another learning rate (each miss is explained), and
the rest belong to other experiments. Measured:

- lookup: `cruijff.store.reuse.plan_lookup`, what `plan` calls (one direct path per node, the near
  entries of each miss read once per near key), in-process, median of --repeat;
- plan: the unchanged re-plan `python -m cruijff plan m.yaml --json` as a user runs it, with the
  store and with --no-store (the difference is what the store costs a plan).

    python bench/store_lookup.py                  # 5,000 nodes, 50,000 entries
    python bench/store_lookup.py --nodes 500 --entries 5000 --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from plan_scale import JOBS_PER_RUN, manifest  # noqa: E402

from cruijff.compiler.render.yaml import dump_yaml  # noqa: E402


def setup(root: Path, nodes: int) -> Path:
    """The manifest with a stand-in model and a real dataset and task file; planned once."""
    from tests.helpers_models import stand_in_model

    runs = max(1, nodes // JOBS_PER_RUN)
    stand_in_model(root / "model")
    shutil.copy(REPO / "tests" / "fixtures" / "manifests" / "data" / "words.json", root / "words.json")
    (root / "tasks.py").write_text("from inspect_ai import task\n\n\n@task\ndef exact(data, **kw):\n    return None\n\n\n"
                                   "@task\ndef fuzzy(data, **kw):\n    return None\n")
    m = manifest(runs, root / "out")
    m["models"]["tiny"]["path"] = str(root / "model")
    m["models"]["tiny"]["tokenizer"] = {"_component_": "torchtune.models.qwen2.qwen2_tokenizer", "path": "v.json"}
    m["datasets"]["words"]["path"] = str(root / "words.json")
    path = root / "m.yaml"
    path.write_text(dump_yaml(m))
    return path


def fill(store_root: Path, doc: dict, entries: int) -> dict:
    """`entries` entries: half the plan's nodes as they are, the other half near (lr changed), the
    rest other experiments' work. Written directly in Store.publish's layout (publishing 50,000
    real entries would time the file system's copies, not the lookup)."""
    keys = [(i, k) for i, k in doc["keys"].items() if k]
    half = len(keys) // 2
    made = {"reused": 0, "near": 0, "other": 0}
    (store_root / "tmp").mkdir(parents=True, exist_ok=True)
    (store_root / "STORE").write_text('{"layout": 1}\n')

    def put(key: str, node: str, settings: dict, near: list[str], parents: list) -> None:
        path = store_root / "entries" / key[:2] / key
        (path / "files" / "logs").mkdir(parents=True)
        (path / "users").mkdir()
        (path / "files" / "logs" / "x.eval").write_bytes(b"x" * 64)
        meta = {"key": key, "near": near, "node": node, "experiment": "earlier", "plan_dir": "/elsewhere/out",
                "kind": node.split("/", 1)[0], "settings": settings, "parents": parents, "created": time.time(),
                "files": {"logs/x.eval": [64, hashlib.sha256(b"x" * 64).hexdigest()]}, "layout": 1}
        (path / "meta.json").write_text(json.dumps(meta))
        for nk in near:
            (store_root / "near" / nk).mkdir(parents=True, exist_ok=True)
            (store_root / "near" / nk / key).touch()

    for n, (node_id, key) in enumerate(keys):
        if len(made) and sum(made.values()) >= entries:
            break
        settings, near, parents = doc["settings"][node_id], doc["near"][node_id], doc["parents"][node_id]
        if n < half:
            put(key, node_id, settings, near, parents)
            made["reused"] += 1
        else:
            changed = json.loads(json.dumps(settings))
            if "config" in changed:
                changed["config"]["optimizer"]["lr"] = 9.9e-9
            other = hashlib.sha256(f"near{key}".encode()).hexdigest()[:32]
            put(other, node_id, changed, near, parents)
            made["near"] += 1
    i = 0
    while sum(made.values()) < entries:
        key = hashlib.sha256(f"other{i}".encode()).hexdigest()[:32]
        bucket = hashlib.sha256(f"bucket{i % 997}".encode()).hexdigest()[:24]
        put(key, f"finetune/other_{i}", {"config": {"optimizer": {"lr": i}}}, [bucket], [])
        made["other"] += 1
        i += 1
    return made


def plan_cli(manifest_path: Path, env: dict, *extra: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cruijff", "plan", str(manifest_path), "--json", *extra],
                          cwd=manifest_path.parent, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"cruijff plan failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--entries", type=int, default=50000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = ap.parse_args(argv)

    from cruijff.store.entries import Store
    from cruijff.store.reuse import plan_lookup, read_keys

    root = Path(tempfile.mkdtemp(prefix="cruijff-store-bench-"))
    env = {**os.environ, "CRUIJFF_STORE": str(root / "store"), "CRUIJFF_CACHE_DIR": str(root / "cache"),
           "PYTHONPATH": str(REPO)}
    try:
        path = setup(root, args.nodes)
        plan_cli(path, env)  # the first plan writes plan.json and store-keys.json
        doc = read_keys(root / "out")
        t0 = time.perf_counter()
        made = fill(root / "store", doc, args.entries)
        fill_s = time.perf_counter() - t0
        store = Store(root / "store")
        times, found = [], None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            found = plan_lookup(store, root / "out", doc)
            times.append(time.perf_counter() - t0)
        with_store = statistics.median(plan_cli(path, env) for _ in range(args.repeat))
        without = statistics.median(plan_cli(path, env, "--no-store") for _ in range(args.repeat))
        print(f"store of {sum(made.values()):,} entries ({made['reused']:,} of this plan's nodes, {made['near']:,} near "
              f"ones, {made['other']:,} others; written in {fill_s:.1f} s)")
        print(f"plan of {len(doc['keys']):,} nodes: {len(found['reused']):,} reused, {len(found['misses']):,} misses "
              f"explained")
        print(f"lookup (plan_lookup, median of {args.repeat}): {statistics.median(times):.3f} s "
              f"(min {min(times):.3f} s)")
        print(f"unchanged re-plan `cruijff plan --json`: {with_store:.2f} s with the store, {without:.2f} s with "
              f"--no-store (median of {args.repeat})")
        if args.keep:
            print(f"kept {root}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
