"""How long `cruijff plan` takes as the grid grows: compile vs write, for 250 … 2,000 runs.

Each run is evaluated at 2 epochs on 2 tasks, so N runs make 5·N jobs (1,000 runs → 5,000 jobs).
The model is a custom family (no registry paths), the dataset does not exist (a warning only) and
the task file is written next to the manifest (plan checks its @task functions), so nothing outside
the temp folder is read.

    python bench/plan_scale.py                  # 250, 500, 1000, 2000 runs
    python bench/plan_scale.py --runs 1000 --profile   # cProfile of one compile + write
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cruijff.compiler.render.yaml import dump_yaml

TARGET_S = 2.0  # for 5,000+ jobs


def manifest(runs: int, out: Path) -> dict:
    """A manifest whose grid has `runs` points: lr × lora_rank × seed (10 × 5 × runs/50)."""
    lrs = [round(1e-5 * (i + 1), 8) for i in range(10)]
    ranks = [4 * (i + 1) for i in range(5)]
    seeds = list(range(max(1, runs // 50)))
    return {
        "experiment": f"bench-{runs}",
        "output_dir": str(out),
        "models": {"tiny": {
            "path": "/nonexistent/tiny", "family": "custom",
            "builder": {"_component_": "torchtune.models.llama3.lora_llama3", "vocab_size": 512, "num_layers": 2,
                        "num_heads": 4, "num_kv_heads": 2, "embed_dim": 64, "max_seq_len": 512,
                        "intermediate_dim": 128},
            "tokenizer": {"_component_": "torchtune.models.qwen2.qwen2_tokenizer", "path": "vocab.json",
                          "merges_file": "merges.txt"},
            "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
        "datasets": {"words": {"path": "/nonexistent/words.json", "format": "instruct_json"}},
        "prompt": {"system": "Capitalize the word.", "template": "Word: {input}\nCapitalized:"},
        "finetune": {"hyperparameters": {"epochs": 2, "batch_size": 8}, "save_epochs": "all",
                     "resources": {"gpus": 1, "cpus": 4, "mem": "32G", "time": "01:00:00"}},
        "grid": {"lr": lrs, "lora_rank": ranks, "seed": seeds},
        "eval": {"tasks": [{"name": "exact", "file": "tasks.py", "task": "exact"},
                           {"name": "fuzzy", "file": "tasks.py", "task": "fuzzy"}],
                 "epochs": "all", "resources": {"gpus": 1, "time": "00:20:00"}},
    }


def plan_once(runs: int, root: Path, profile: bool = False) -> dict[str, float]:
    from cruijff.compiler.pipeline import compile_manifest
    from cruijff.compiler.write import write_plan

    work = root / f"runs-{runs}"
    work.mkdir()
    path = work / "bench.yaml"
    path.write_text(dump_yaml(manifest(runs, work / "out")))
    (work / "tasks.py").write_text("from inspect_ai import task\n\n\n@task\ndef exact(**kwargs):\n    pass\n\n\n"
                                   "@task\ndef fuzzy(**kwargs):\n    pass\n")
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t0 = time.perf_counter()
    compiled = compile_manifest(path)
    t1 = time.perf_counter()
    write_plan(compiled.plan, compiled.files)
    t2 = time.perf_counter()
    if prof:
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(35)
        print(s.getvalue())
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
        print(s.getvalue())
    t3 = time.perf_counter()
    compiled2 = compile_manifest(path)  # re-plan over the existing plan: the diff path
    write_plan(compiled2.plan, compiled2.files)
    t4 = time.perf_counter()
    shutil.rmtree(work)
    return {"runs": runs, "jobs": len(compiled.plan.nodes), "files": len(compiled.files),
            "compile": t1 - t0, "write": t2 - t1, "total": t2 - t0, "replan": t4 - t3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, nargs="*", default=[250, 500, 1000, 2000])
    ap.add_argument("--profile", action="store_true", help="print a cProfile of each size")
    ap.add_argument("--dir", help="scratch folder (default: a temp folder)")
    args = ap.parse_args(argv)
    import cruijff.compiler.pipeline  # noqa: F401  (imports are not what we measure)
    import cruijff.compiler.write  # noqa: F401

    root = Path(tempfile.mkdtemp(prefix="cruijff-bench-", dir=args.dir))
    ok = True
    try:
        print(f"{'runs':>6} {'jobs':>6} {'files':>6} {'compile s':>10} {'write s':>8} {'total s':>8} "
              f"{'µs/job':>7} {'re-plan s':>9}")
        for runs in args.runs:
            r = plan_once(runs, root, args.profile)
            print(f"{r['runs']:>6} {r['jobs']:>6} {r['files']:>6} {r['compile']:>10.3f} {r['write']:>8.3f} "
                  f"{r['total']:>8.3f} {1e6 * r['total'] / r['jobs']:>7.0f} {r['replan']:>9.3f}", flush=True)
            if r["jobs"] >= 5000 and r["total"] * 5000 / r["jobs"] > TARGET_S:
                ok = False
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if not ok:
        print(f"slower than the target: {TARGET_S} s for 5,000+ jobs", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
