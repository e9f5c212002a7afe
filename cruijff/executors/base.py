"""The executor interface: what `apply`, `status` and `cancel` need from a scheduler."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from cruijff.model import Node, Plan

# Scheduler-side states, normalised across executors.
PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, UNKNOWN = (
    "pending", "running", "completed", "failed", "cancelled", "unknown",
)


@dataclass(frozen=True)
class JobInfo:
    """What the scheduler says about one job."""

    job_id: str
    node_id: str | None  # recovered from the job name, when the job is ours
    state: str  # one of the states above
    reason: str | None = None  # e.g. SLURM's Dependency / DependencyNeverSatisfied
    exit_code: int | None = None
    start: float | None = None  # unix time
    end: float | None = None
    node_hash: str | None = None  # from the job's comment


class Executor(ABC):
    name: str

    @abstractmethod
    def submit(self, plan: Plan, node: Node, parent_job_ids: list[str]) -> str:
        """Submit one node, held until every parent job succeeded; return the job id."""

    @abstractmethod
    def jobs(self, plan: Plan) -> dict[str, JobInfo]:
        """Every job the scheduler knows for this plan's experiment, by job id, in one query."""

    @abstractmethod
    def cancel(self, job_ids: list[str]) -> None:
        """Cancel these jobs; unknown ids are ignored."""
