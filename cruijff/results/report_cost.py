"""What each job cost: GPU-hours, GPU utilisation and memory, and training throughput.

Inputs, per node of a plan (each optional; a job that has not run is simply left out):
- `<node>/record.jsonl`: start and end events written by the job script (wall time);
- `<node>/gpu_usage.csv`: nvidia-smi samples taken while the job ran (render/sbatch.gpu_sampling_lines);
- `finetune/<run>/epoch_<n>/record.json`: tokens and train seconds per epoch (cruijff/train/metrics.py).
GPU-hours are wall hours x the GPUs the node asked for (what the scheduler charges), not the hours
the GPUs were busy; utilisation says how busy they were. Standard library only.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cruijff.plan import FINETUNE, Plan
from cruijff.compiler.render.sbatch import GPU_USAGE_FILE
COST_COLUMNS = ["node", "kind", "run", "gpus", "wall_hours", "gpu_hours", "gpu_samples", "mean_gpu_util_pct",
                "max_gpu_memory_mib", "tokens", "train_seconds", "tokens_per_second"]


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out


def wall_seconds(record: Path) -> float | None:
    """Seconds between each start and its end event, summed over attempts (a retry runs again)."""
    total, start, seen = 0.0, None, False
    for e in _events(record):
        if e.get("event") == "start" and isinstance(e.get("time"), (int, float)):
            start = float(e["time"])
        elif e.get("event") == "end" and start is not None and isinstance(e.get("time"), (int, float)):
            total += max(0.0, float(e["time"]) - start)
            start, seen = None, True
    return total if seen else None


def gpu_usage(path: Path) -> dict[str, Any]:
    """Samples, mean utilisation (%) and peak memory (MiB) from a gpu_usage.csv; empty without one."""
    if not path.is_file():
        return {}
    utils, mems = [], []
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.reader(fh):
            if len(row) < 5 or row[0] == "timestamp":
                continue
            try:
                utils.append(float(row[2]))
                mems.append(float(row[3]))
            except ValueError:
                continue  # "[N/A]" or a torn last line
    if not utils:
        return {"gpu_samples": 0}
    return {"gpu_samples": len(utils), "mean_gpu_util_pct": sum(utils) / len(utils),
            "max_gpu_memory_mib": max(mems)}


def throughput(run_dir: Path) -> dict[str, Any]:
    """Tokens and training seconds summed over the epoch records of a fine-tune."""
    tokens, seconds = 0, 0.0
    for rec in sorted(run_dir.glob("epoch_*/record.json")):
        try:
            data = json.loads(rec.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        tokens += int(data.get("tokens") or 0)
        seconds += float(data.get("train_seconds") or 0.0)
    if not tokens:
        return {}
    return {"tokens": tokens, "train_seconds": seconds,
            "tokens_per_second": tokens / seconds if seconds > 0 else None}


def cost_rows(plan: Plan, root: Path) -> list[dict[str, Any]]:
    """One row per node that has run (has a start and an end event)."""
    rows = []
    for n in plan.nodes:
        wall = wall_seconds(root / n.record)
        if wall is None:
            continue
        gpus = n.resources.gpus
        row = {"node": n.id, "kind": n.kind, "run": n.attrs.get("run"), "gpus": gpus,
               "wall_hours": wall / 3600, "gpu_hours": wall / 3600 * gpus}
        row.update(gpu_usage(root / n.dir / GPU_USAGE_FILE))
        if n.kind == FINETUNE:
            row.update(throughput(root / n.dir))
        rows.append({c: row.get(c) for c in COST_COLUMNS})
    return rows


def run_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run (fine-tune plus its evaluations; base evals and data jobs under their node kind)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["run"] or f"({r['kind']})", []).append(r)
    out = []
    for run, rs in groups.items():
        sampled = [r for r in rs if r.get("gpu_samples")]
        weight = sum(r["gpu_samples"] for r in sampled)
        ft = [r for r in rs if r["kind"] == FINETUNE and r.get("tokens")]
        out.append({
            "run": run, "jobs": len(rs),
            "gpu_hours": sum(r["gpu_hours"] for r in rs),
            "mean_gpu_util_pct": (sum(r["mean_gpu_util_pct"] * r["gpu_samples"] for r in sampled) / weight
                                  if weight else None),
            "max_gpu_memory_mib": max((r["max_gpu_memory_mib"] for r in sampled), default=None),
            "train_tokens_per_second": (sum(r["tokens"] for r in ft) / sum(r["train_seconds"] for r in ft)
                                        if ft and sum(r["train_seconds"] for r in ft) > 0 else None),
        })
    return out


def duration(hours: float) -> str:
    """Hours in the unit that reads best: seconds, minutes or hours."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.2f} h"


def cost_sentence(nodes) -> str:
    """What the jobs used, in the units used: GPU-hours where GPUs were asked for, wall time on CPU otherwise."""
    gpu = nodes[nodes["gpus"] > 0]
    cpu = nodes[nodes["gpus"] <= 0]
    parts = []
    if not gpu.empty:
        parts.append(f"{float(gpu['gpu_hours'].sum()):.3f} GPU-hours on {len(gpu)} GPU jobs (wall hours x GPUs "
                     "asked for; utilisation from nvidia-smi samples)")
    if not cpu.empty:
        parts.append(f"{duration(float(cpu['wall_hours'].sum()))} of wall time on {len(cpu)} CPU-only jobs")
    return "<p>" + "; ".join(parts) + ". Tokens/s from the fine-tunes' epoch records.</p>"


def write_sections(plan: Plan, root: Path, out: Path) -> tuple[dict[str, Path], list[Path], str]:
    """cost.csv (per node) and cost_runs.csv (per run), and the report's "What it cost" section."""
    import pandas as pd

    rows = cost_rows(plan, root)
    nodes = pd.DataFrame(rows, columns=COST_COLUMNS)
    runs = pd.DataFrame(run_summary(rows), columns=["run", "jobs", "gpu_hours", "mean_gpu_util_pct",
                                                    "max_gpu_memory_mib", "train_tokens_per_second"])
    tables = {}
    for name, df in (("cost", nodes), ("cost_runs", runs)):
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        tables[f"{name}.csv"] = path
    reused = _reused_section(plan, root, out, tables)
    if runs.empty:
        html = "<h2>What it cost</h2><p>No job has finished yet.</p>" + reused
    else:
        from cruijff.results.report.html import frame_html

        html = "<h2>What it cost</h2>" + cost_sentence(nodes) + (
            frame_html(runs, index=False, float_format=lambda v: f"{v:.3f}")) + reused
    return tables, [], html


def _reused_section(plan: Plan, root: Path, out: Path, tables: dict[str, Path]) -> str:
    """reused.csv and one sentence: the nodes taken from the results store and what they cost
    where they ran (docs/store.md); nothing when none was reused."""
    import csv

    from cruijff.store.reuse import saved

    found = saved(root, [n.id for n in plan.nodes])
    if not found["reused"]:
        return ""
    path = out / "reused.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["node", "experiment", "plan_dir", "gpus", "wall_hours", "gpu_hours"])
        for node_id, src in found["nodes"].items():
            wall = src.get("wall_s")
            w.writerow([node_id, src.get("experiment"), src.get("plan_dir"), src.get("gpus"),
                        "" if wall is None else wall / 3600, src.get("gpu_hours")])
    tables["reused.csv"] = path
    return (f"<p>{found['reused']} node(s) were reused from the results store instead of run again, saving "
            f"{found['gpu_hours_saved']:.3f} GPU-hours ({duration(found['wall_hours_saved'])} of wall time where "
            "they ran; reused.csv).</p>")
