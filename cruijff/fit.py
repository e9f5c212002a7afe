"""Will the experiment fit the cluster? What `cruijff plan` says before anything is submitted.

Pure: the submission layout comes from the same batching as `apply` (cruijff/batching.py) over the
rendered job scripts; the limits are read by the SLURM executor at the edge (commands/compile.py).
"""

from __future__ import annotations

from typing import Any

from cruijff.batching import header_shape, make_batches
from cruijff.errors import Problem
from cruijff.model import Plan


def submission_layout(plan: Plan, scripts: dict[str, str], max_array_size: int) -> dict[str, Any]:
    """How a first apply submits the whole plan: sbatch calls, job arrays, plain jobs."""
    batches = make_batches(plan, [n.id for n in plan.nodes], {}, lambda n: header_shape(scripts.get(n.script, "")),
                           max_array_size=max_array_size, max_concurrent=plan.cluster.get("max_concurrent") or {})
    arrays = [b for b in batches if b.is_array]
    return {
        "jobs": len(plan.nodes),
        "submissions": len(batches),
        "arrays": len(arrays),
        "plain_jobs": len(batches) - len(arrays),
        "max_array_size": max_array_size,
    }


def fit_problems(n_jobs: int, limits: dict[str, Any]) -> list[Problem]:
    """Warnings for an experiment that cannot be queued in one go under these limits.

    limits: MaxJobCount (cluster) and submit_limit: (n, where it comes from) for the user.
    """
    problems = []
    submit = limits.get("submit_limit")
    how = ("apply it in parts with `cruijff apply --only ...` (e.g. --only model:NAME), each once the "
           "previous part has finished, or shrink the grid")
    if submit and n_jobs > submit[0]:
        problems.append(Problem(
            f"the experiment has {n_jobs:,} jobs, but SLURM lets you queue at most {submit[0]:,} "
            f"({submit[1]}; every array task counts as one): `cruijff apply` cannot submit it in one go",
            hint=how, severity="warning"))
    max_jobs = limits.get("MaxJobCount")
    if max_jobs and n_jobs > max_jobs:
        problems.append(Problem(
            f"the experiment has {n_jobs:,} jobs, but the cluster holds at most {max_jobs:,} (MaxJobCount): "
            f"`cruijff apply` cannot submit it in one go", hint=how, severity="warning"))
    return problems
