"""What `cruijff plan` reports: counts, GPUs and GPU-hours per node kind, and the diff."""

from __future__ import annotations

from typing import Any

from cruijff.artifact import PlanDiff
from cruijff.model import NODE_KINDS, Plan


def plan_summary(plan: Plan, diff: PlanDiff | None) -> dict[str, Any]:
    kinds: dict[str, dict[str, Any]] = {}
    for kind in NODE_KINDS:
        nodes = [n for n in plan.nodes if n.kind == kind]
        if nodes:
            kinds[kind] = {
                "jobs": len(nodes),
                "gpus": sum(n.resources.gpus for n in nodes),
                "gpu_hours": round(sum(n.resources.gpu_hours() for n in nodes), 2),
            }
    out: dict[str, Any] = {
        "experiment": plan.experiment,
        "output_dir": plan.output_dir,
        "jobs": len(plan.nodes),
        "kinds": kinds,
        "gpu_hours": round(sum(k["gpu_hours"] for k in kinds.values()), 2),
    }
    if diff is not None:
        out["changes"] = {k: len(v) for k, v in diff.as_dict().items()}
    return out
