"""A plan against the store: what `plan` says (reused, or why not), what `apply` materialises,
what `status` and `apply` publish once a node is done.

A node's outputs are every file of its folder except what the plan itself wrote (job script,
configs), the job's own bookkeeping (record.jsonl, scheduler output, GPU samples, an out-of-memory
retry's overrides) and a fine-tune's resumable checkpoints/: for a fine-tune its exported epochs and
logs, for an evaluation its inspect logs. A node is published only when all of them are there (every
saved epoch's exported model or adapter; at least one evaluation log). A reused node's folder gets `reused.json`: where
its result came from and what it cost there (status and report show the GPU-hours saved).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, Node, Plan
from cruijff.store.keys import KEYS_FILE, SETTINGS_FILE, explain, flatten

STORED_KINDS = (FINETUNE, EVAL, BASE_EVAL)  # a prepare job writes outside its folder: never stored
PUBLISHED = ".cruijff-published.json"  # node id → key published or reused here (None: never stored)
REUSED = "reused.json"  # in a reused node's folder
PLAN_FILES = {"job.sbatch", "finetune.yaml", "model_config.yaml", "task_config.yaml"}
BOOKKEEPING = {"record.jsonl", "job.out", "gpu_usage.csv", "overrides.json", REUSED}
SKIPPED_DIRS = {"checkpoints"}


def read_keys(plan_dir: str | Path, *, settings: bool = True) -> dict[str, Any] | None:
    """The plan directory's store-keys.json (written by `plan`), with its store-settings.json unless
    settings=False (a plan of cruijff before it had the second file keeps its settings in the first)."""
    try:
        doc = json.loads((Path(plan_dir) / KEYS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict):
        return None
    if settings and "settings" not in doc:
        doc["settings"] = read_settings(plan_dir)
    return doc


def read_settings(plan_dir: str | Path) -> dict[str, Any]:
    try:
        found = json.loads((Path(plan_dir) / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def read_reused(plan_dir: str | Path, node_id: str) -> dict[str, Any] | None:
    try:
        return json.loads((Path(plan_dir) / node_id / REUSED).read_text())
    except (OSError, ValueError):
        return None


def _kind(node_id: str) -> str:
    return node_id.split("/", 1)[0]


def _source(entry) -> dict[str, Any]:
    m = entry.meta
    return {"key": entry.key, "experiment": m.get("experiment"), "plan_dir": m.get("plan_dir"),
            "node": m.get("node"), "gpus": m.get("gpus"), "wall_s": m.get("wall_s"),
            "gpu_hours": m.get("gpu_hours"), "reserved_gpu_hours": m.get("reserved_gpu_hours")}


# --- plan ----------------------------------------------------------------------------------------

def plan_lookup(store, plan_dir: str | Path, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """For every node: reused (from which experiment and plan) or not, and why not where a near
    stored entry says it. One direct lookup per node; near entries are read once per near key."""
    plan_dir = os.path.abspath(plan_dir)
    doc = doc if doc is not None else read_keys(plan_dir, settings=False)
    out: dict[str, Any] = {"path": str(store.root), "nodes": {}, "reused": {}, "misses": {}}
    if doc is None:
        out["note"] = f"{KEYS_FILE} is missing: plan again to look the nodes up in the store"
        return out
    keys, near, settings = doc["keys"], doc.get("near") or {}, doc.get("settings")
    parents = doc.get("parents") or {}
    near_cache: dict[str, list] = {}
    for node_id, key in keys.items():
        kind = _kind(node_id)
        row: dict[str, Any] = {"key": key, "reused": False}
        out["nodes"][node_id] = row
        if kind not in STORED_KINDS:
            row["why"] = "data preparation is not stored"
            continue
        if key is None:
            row["why"] = "no key: its model or data (or a parent's) could not be fingerprinted"
            continue
        entry = store.lookup(key)
        if entry is not None:
            if entry.meta.get("plan_dir") == plan_dir and entry.meta.get("node") == node_id:
                row["why"] = "published from this plan directory"
                continue
            row["reused"] = True  # where from: out["reused"][node_id]
            out["reused"][node_id] = _source(entry)
            continue
        candidates: list = []
        for nk in near.get(node_id) or []:  # the same model and data first, then the same model
            if nk not in near_cache:
                near_cache[nk] = [e.meta for e in store.near(nk)]
            candidates = near_cache[nk]
            if candidates:
                break
        if candidates and settings is None:  # the first miss to explain
            settings = read_settings(plan_dir)
        explained = (explain(node_id, flatten(settings.get(node_id) or {}), parents.get(node_id) or [], candidates)
                     if candidates else None)
        row["why"] = explained["text"] if explained else "not in the store (nothing near it either)"
        if explained:
            out["misses"][node_id] = explained
    out["gpu_hours_saved"] = round(sum(float(s.get("reserved_gpu_hours") or 0) for s in out["reused"].values()), 3)
    return out


# --- publish -------------------------------------------------------------------------------------

def outputs(node: Node, node_dir: Path) -> tuple[list[str], str | None]:
    """(the node's output files, relative; None) or ([], why it is not complete)."""
    files: list[str] = []
    for root, dirs, names in os.walk(node_dir):
        rel_root = os.path.relpath(root, node_dir)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (rel_root == "." and d in SKIPPED_DIRS))
        for name in sorted(names):
            if name.startswith("."):
                continue
            if rel_root == "." and (name in PLAN_FILES or name in BOOKKEEPING or name.startswith("slurm-")):
                continue
            files.append(name if rel_root == "." else f"{rel_root}/{name}")
    if node.kind == FINETUNE:
        for epoch in node.attrs.get("save_epochs") or []:  # the merged model, the adapter, or both
            if not any(f.startswith((f"epoch_{epoch}/model/", f"epoch_{epoch}/adapter/")) for f in files):
                return [], f"epoch_{epoch}'s exported model is missing"
    elif node.kind in (EVAL, BASE_EVAL) and not any(f.startswith("logs/") for f in files):
        return [], "no evaluation log"
    if not files:
        return [], "no outputs"
    return files, None


def wall_seconds(record: Path) -> float | None:
    """The last attempt's wall time from the job's record.jsonl (start → end)."""
    start = end = None
    try:
        lines = record.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "start":
            start, end = event.get("time"), None
        elif event.get("event") == "end":
            end = event.get("time")
    if start is None or end is None:
        return None
    return max(0.0, float(end) - float(start))


def _load_marker(plan_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((plan_dir / PUBLISHED).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_marker(plan_dir: Path, marker: dict[str, str]) -> None:
    tmp = plan_dir / f"{PUBLISHED}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(marker, sort_keys=True))
        os.replace(tmp, plan_dir / PUBLISHED)
    except OSError:
        tmp.unlink(missing_ok=True)


def publish_done(store, plan: Plan, done: list[str], doc: dict[str, Any] | None = None) -> dict[str, str]:
    """Publish the done nodes of a plan that are not in the store yet. Returns node id → what
    happened (published, present, or why not), for the nodes it tried."""
    root = Path(plan.output_dir)
    if store is None:
        return {}
    marker = _load_marker(root)  # what this plan directory published (a node run again leaves it: detach)
    done = [i for i in done if i not in marker]
    if not done:  # status of a big plan: nothing new is done, store-keys.json is not read
        return {}
    doc = doc if doc is not None else read_keys(root)
    if doc is None:
        return {}
    keys, by_id = doc["keys"], plan.by_id()
    settings, near, parents = doc.get("settings") or {}, doc.get("near") or {}, doc.get("parents") or {}
    results: dict[str, str] = {}
    for node_id in done:
        node, key = by_id.get(node_id), keys.get(node_id)
        if node is None:
            continue
        if key is None or node.kind not in STORED_KINDS:
            marker[node_id] = None  # nothing to publish: not asked again
            continue
        node_dir = root / node.dir
        if (node_dir / REUSED).exists():  # it came from the store
            marker[node_id] = key
            continue
        files, missing = outputs(node, node_dir)
        if missing:
            results[node_id] = f"not published: {missing}"
            continue
        wall = wall_seconds(root / node.record)
        gpus = node.resources.gpus
        meta = {"kind": node.kind, "node": node_id, "experiment": plan.experiment, "plan_dir": plan.output_dir,
                "settings": flatten(settings.get(node_id) or {}), "parents": parents.get(node_id) or [], "attrs": node.attrs,
                "gpus": gpus, "wall_s": wall, "gpu_hours": (wall / 3600 * gpus) if wall is not None else None,
                "reserved_gpu_hours": node.resources.gpu_hours(), "node_hash": node.hash}
        entry, what = store.publish(key, near.get(node_id), meta, node_dir, files)
        results[node_id] = what
        if entry is not None:
            store.add_user(entry, plan.output_dir, node_id, plan.experiment)
            marker[node_id] = key
    _save_marker(root, marker)
    return results


# --- apply ---------------------------------------------------------------------------------------

def materialise(store, plan: Plan, node_id: str, key: str) -> tuple[dict[str, Any] | None, str | None]:
    """Put the stored result of this node into the plan directory. (source, None) when it was;
    (None, why not) when the entry is gone or refused (then the node runs as usual)."""
    entry = store.lookup(key)
    if entry is None:
        return None, "not in the store"
    node_dir = Path(plan.output_dir) / node_id
    problem = store.materialise(entry, node_dir, plan.output_dir, node_id, plan.experiment)
    if problem:
        return None, problem
    source = {**_source(entry), "reused_at": time.time()}
    tmp = node_dir / f".{REUSED}.tmp"
    tmp.write_text(json.dumps(source, indent=1) + "\n")
    os.replace(tmp, node_dir / REUSED)
    marker = _load_marker(Path(plan.output_dir))
    marker[node_id] = key
    _save_marker(Path(plan.output_dir), marker)
    return source, None


def source_text(source: dict[str, Any]) -> str:
    return f"reused from experiment {source.get('experiment')} ({source.get('plan_dir')}, {source.get('node')})"


def saved(plan_dir: str | Path, node_ids: list[str]) -> dict[str, Any]:
    """Reused nodes among node_ids and the GPU-hours they saved (measured where they ran, else reserved)."""
    rows = {}
    for node_id in node_ids:
        src = read_reused(plan_dir, node_id)
        if src is not None:
            rows[node_id] = src
    measured = sum(float(s.get("gpu_hours") or 0) for s in rows.values())
    reserved = sum(float(s.get("reserved_gpu_hours") or 0) for s in rows.values())
    wall = sum(float(s.get("wall_s") or 0) for s in rows.values())
    return {"reused": len(rows), "nodes": rows, "gpu_hours_saved": round(measured, 4),
            "reserved_gpu_hours_saved": round(reserved, 4), "wall_hours_saved": round(wall / 3600, 4)}


def reusable_source(store, plan: Plan, node_id: str, key: str | None) -> dict[str, Any] | None:
    """The source of a stored result this node could reuse (looked up, not verified), or None."""
    if key is None or _kind(node_id) not in STORED_KINDS:
        return None
    entry = store.lookup(key)
    if entry is None:
        return None
    return _source(entry)


def detach(plan_dir: str | Path, node_ids: list[str]) -> None:
    """Before nodes run again: their files that are hard links into the store become copies of
    their own, and they forget where they came from, so the new run never writes into a stored file."""
    root = Path(plan_dir)
    marker = _load_marker(root)
    hit = [i for i in node_ids if i in marker]
    for node_id in hit:
        node_dir = root / node_id
        for folder, _, names in os.walk(node_dir):
            for name in names:
                path = Path(folder) / name
                try:
                    if path.is_symlink() or path.stat().st_nlink < 2:
                        continue
                    tmp = path.with_name(f".{name}.cruijff-detach")
                    import shutil

                    shutil.copy2(path, tmp)
                    os.replace(tmp, path)
                except OSError:
                    continue
        (node_dir / REUSED).unlink(missing_ok=True)
        marker.pop(node_id, None)
    if hit:
        _save_marker(root, marker)
