"""Which executor runs a plan: `auto` means SLURM where `sbatch` is on PATH, else local."""

from __future__ import annotations

import importlib
import shutil

from cruijff.errors import UsageError
from cruijff.run.executors.base import Executor
from cruijff.plan import Plan

EXECUTOR_CHOICES = ("auto", "slurm", "local")


def resolve_name(name: str | None, plan: Plan) -> str:
    """`slurm` or `local`: the --executor option, else the plan's choice, with auto resolved."""
    chosen = name or plan.executor or "auto"
    if chosen not in EXECUTOR_CHOICES:
        raise UsageError(f"unknown executor {chosen!r}", hint=f"use one of {', '.join(EXECUTOR_CHOICES)}")
    if chosen == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    return chosen


def make_executor(name: str, plan: Plan) -> Executor:
    """An executor instance by resolved name; the SLURM module is imported only when used."""
    if name == "local":
        from cruijff.run.executors.local import LocalExecutor

        return LocalExecutor(max_parallel=plan.max_parallel)
    if name == "slurm":
        if not shutil.which("sbatch"):
            raise UsageError("--executor slurm: `sbatch` is not on PATH",
                             hint="run on a SLURM login node, or use --executor local")
        module = importlib.import_module("cruijff.run.executors.slurm")
        return module.SlurmExecutor.for_plan(plan.cluster)
    raise UsageError(f"unknown executor {name!r}", hint=f"use one of {', '.join(EXECUTOR_CHOICES)}")
