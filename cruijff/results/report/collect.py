"""Collect a plan's results as rows and frames: one row per (eval node, metric) and one per logged loss.

Inputs (all optional per node, a missing log is simply absent from the tables):
- `<plan>/plan.json`: eval nodes (attrs run, model, dataset, epoch, task, hyperparameters, grid) and
  base_eval nodes (attrs model, dataset, task);
- `<plan>/<node id>/logs/`: inspect logs, read with cruijff.results.scores (the latest successful one);
- `<plan>/finetune/<run>/logs/metrics.jsonl`: training events with step, epoch, train_loss / val_loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cruijff.errors import CruijffError
from cruijff.plan import EVAL, EVAL_KINDS, FINETUNE, Plan
from cruijff.results.scores import EvalScore, read_scores

BASE_EPOCH = -1  # where the untuned base model sits on an epoch axis
FIXED_COLUMNS = ["node", "kind", "run", "model", "dataset", "eval_dataset", "epoch", "task"]
SCORE_TAIL = ["metric", "value", "samples", "log"]
LOSS_COLUMNS = ["run", "model", "dataset", "split", "step", "epoch", "loss"]


class ReportError(CruijffError):
    """The report cannot be built (missing libraries, unwritable output)."""


@dataclass
class Report:
    out_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    html: Path | None = None
    evals_total: int = 0
    evals_scored: int = 0
    missing: list[str] = field(default_factory=list)  # eval node ids with no successful log
    sections: list[str] = field(default_factory=list)  # HTML of the extra sections (cost, groups)
    comparisons: Any = None  # cruijff.results.comparisons.Comparisons


def _best_log(scores: list[EvalScore]) -> EvalScore | None:
    """The latest successful log; a retried eval leaves earlier failures behind."""
    for s in reversed(scores):
        if s.status == "success":
            return s
    return None


def _cell(value: Any) -> Any:
    """Lists and dicts (e.g. lora target modules) become JSON text so the table stays flat."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def hyperparameter_names(plan: Plan) -> list[str]:
    names: list[str] = []
    for n in plan.nodes:
        if n.kind == EVAL:
            for k in n.attrs.get("hyperparameters") or {}:
                if k not in names:
                    names.append(k)
    return names


def varied_hyperparameters(plan: Plan) -> list[str]:
    """Hyperparameters that take more than one value across the plan's eval nodes (the grid's axes)."""
    values: dict[str, set] = {}
    for n in plan.nodes:
        if n.kind == EVAL:
            for k, v in (n.attrs.get("hyperparameters") or {}).items():
                values.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    return [k for k, vs in values.items() if len(vs) > 1]


def _hp_column(name: str) -> str:
    return f"hp_{name}" if name in FIXED_COLUMNS + SCORE_TAIL + ["split", "step", "loss"] else name


def score_rows(plan: Plan, root: Path) -> tuple[list[dict[str, Any]], int, list[str]]:
    """One dict per (eval node, metric); also the number of eval nodes and those without scores."""
    hp_names = hyperparameter_names(plan)
    rows, total, missing = [], 0, []
    for n in plan.nodes:
        if n.kind not in EVAL_KINDS:
            continue
        total += 1
        log = _best_log(read_scores(root / n.id / "logs"))
        if log is None:
            missing.append(n.id)
            continue
        a = n.attrs
        base = {
            "node": n.id, "kind": n.kind, "run": a.get("run"), "model": a.get("model"),
            "dataset": a.get("dataset"), "eval_dataset": a.get("eval_dataset", a.get("dataset")),
            "epoch": a.get("epoch", BASE_EPOCH) if n.kind == EVAL else BASE_EPOCH, "task": a.get("task"),
        }
        hps = a.get("hyperparameters") or {}
        for name in hp_names:
            base[_hp_column(name)] = _cell(hps.get(name)) if n.kind == EVAL else None
        for metric, value in log.metrics.items():
            rows.append({**base, "metric": metric, "value": value, "samples": log.samples, "log": log.path})
    return rows, total, missing


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a killed job can leave a torn last line
        if isinstance(event, dict):
            events.append(event)
    return events


def loss_rows(plan: Plan, root: Path) -> list[dict[str, Any]]:
    rows = []
    for n in plan.nodes:
        if n.kind != FINETUNE:
            continue
        path = root / n.id / "logs" / "metrics.jsonl"
        if not path.is_file():
            continue
        for e in _read_jsonl(path):
            for split in ("train", "val"):
                loss = e.get(f"{split}_loss")  # null (or NaN, in older files) when not finite
                if isinstance(loss, (int, float)) and math.isfinite(loss) and e.get("step") is not None:
                    rows.append({"run": n.attrs.get("run"), "model": n.attrs.get("model"),
                                 "dataset": n.attrs.get("dataset"), "split": split, "step": e["step"],
                                 "epoch": e.get("epoch"), "loss": float(loss)})
    return rows

def frames(plan: Plan, root: Path):
    """The scores and losses as pandas frames, the number of eval nodes and those without scores."""
    try:
        import pandas as pd
    except ImportError:
        raise ReportError("cruijff report needs pandas", hint="pip install 'cruijff[eval]'") from None
    rows, total, missing = score_rows(plan, root)
    hp_cols = [_hp_column(h) for h in hyperparameter_names(plan)]
    scores = pd.DataFrame(rows, columns=FIXED_COLUMNS + hp_cols + SCORE_TAIL)
    scores["epoch"] = scores["epoch"].astype("Int64")
    scores["value"] = scores["value"].astype(float)
    for col in hp_cols + ["samples"]:  # base-model rows have no hyperparameters: keep ints ints
        if _all_ints(row.get(col) for row in rows):
            scores[col] = scores[col].astype("Int64")
    losses = pd.DataFrame(loss_rows(plan, root), columns=LOSS_COLUMNS)
    return scores, losses, total, missing


def _all_ints(column) -> bool:
    """Whether a column's values (as read, before pandas turns int + None into float) are ints."""
    values = [v for v in column if v is not None]
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)

