"""A plan directory with realistic inspect logs (per-sample scores) for the report's tests and screenshot:
a base model and a 2 x 2 grid (lr x lora_rank, 2 epochs) on two tasks: capitalization (right/wrong,
exact_match) and numbers (absolute error, continuous; items in twin-pair clusters)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, Node, Plan, Resources, dumps

ITEMS = 60
SKILL = {"base": 0.35, ("1e-4", 8): 0.55, ("1e-4", 32): 0.6, ("1e-3", 8): 0.7, ("1e-3", 32): 0.78}


def _samples(task: str, skill: float, rng, drop: int = 0) -> list[dict]:
    out = []
    for i in range(ITEMS - drop):
        if task == "capitalization":
            out.append({"id": i, "epoch": 1, "scores": {"exact_match": {"value": "C" if rng.random() < skill else "I"}}})
        else:
            err = abs(rng.normal(0, 3 * (1 - skill))) + (i // 2 % 3) * 0.2  # twins share an offset
            out.append({"id": i, "epoch": 1, "metadata": {"cluster": f"twin{i // 2}"},
                        "scores": {"continuous": {"value": round(float(err), 3),
                                                  "metadata": {"parsed": True}}}})
    return out


def write_log(path: Path, task: str, samples: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if task == "capitalization":
        vals = [1.0 if s["scores"]["exact_match"]["value"] == "C" else 0.0 for s in samples]
        sd = float(np.std(vals, ddof=1) / np.sqrt(len(vals)))
        scores = [{"name": "exact_match", "metrics": {"accuracy": {"name": "accuracy", "value": float(np.mean(vals))},
                                                      "stderr": {"name": "stderr", "value": sd}}}]
    else:
        vals = [s["scores"]["continuous"]["value"] for s in samples]
        scores = [{"name": "continuous", "metrics": {"mae": {"name": "mae", "value": float(np.mean(vals))},
                                                     "parse_rate": {"name": "parse_rate", "value": 1.0}}}]
    header = {"version": 2, "status": "success",
              "eval": {"task": task, "model": "hf/local", "created": "2026-01-01T00:00:00+00:00"},
              "results": {"total_samples": len(samples), "completed_samples": len(samples), "scores": scores},
              "stats": {"started_at": "2026-01-01T00:00:00+00:00", "completed_at": "2026-01-01T00:01:00+00:00"}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.json", json.dumps(header))
        for s in samples:
            zf.writestr(f"samples/{s['id']}_epoch_1.json", json.dumps(s))


def grid_plan(root: Path, *, seeds: tuple[int, ...] = (), drop_items: int = 0) -> Path:
    """The 4-run x 2-task grid (or, with seeds, lr=1e-3 rank 8 replicated over those seeds) under root."""
    rng = np.random.default_rng(7)
    res = Resources()
    nodes = []
    tasks = ("capitalization", "numbers")
    runs = ([(f"lr1e-3_r8_seed{s}", "1e-3", 8, s) for s in seeds] if seeds else
            [(f"lr{lr}_r{r}", lr, r, None) for lr in ("1e-4", "1e-3") for r in (8, 32)])
    for run, lr, rank, seed in runs:
        grid = {"lr": float(lr), "lora_rank": rank, **({"seed": seed} if seed is not None else {})}
        attrs = {"run": run, "model": "smollm2", "dataset": "words", "grid": grid,
                 "hyperparameters": {**grid, "epochs": 2}}
        nodes.append(Node(f"finetune/{run}", FINETUNE, (), res, "h", {**attrs, "save_epochs": [0, 1]}))
        for epoch in (0, 1):
            for task in tasks:
                nid = f"eval/{run}/epoch_{epoch}/{task}"
                nodes.append(Node(nid, EVAL, (f"finetune/{run}",), res, "h",
                                  {**attrs, "epoch": epoch, "task": task, "eval_dataset": "words"}))
                skill = SKILL[(lr, rank)] - (0.1 if epoch == 0 else 0) + (0.02 * (seed or 0))
                drop = drop_items if (run == runs[-1][0] and epoch == 1 and task == "capitalization") else 0
                write_log(root / nid / "logs" / "2026-01-01T00-00-00_x.eval", task, _samples(task, skill, rng, drop))
    for task in tasks:
        nid = f"base_eval/smollm2/words/{task}"
        nodes.append(Node(nid, BASE_EVAL, (), res, "h", {"model": "smollm2", "dataset": "words",
                                                         "eval_dataset": "words", "task": task}))
        write_log(root / nid / "logs" / "2026-01-01T00-00-00_x.eval", task, _samples(task, SKILL["base"], rng))
    plan = Plan("grid", str(root), str(root / "m.yaml"), "local", 1, {}, tuple(nodes))
    (root / "plan.json").write_text(dumps(plan))
    return root
