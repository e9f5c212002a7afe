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


@dataclass(frozen=True)
class ArraySubmission:
    """One job array: task t of `tasks` runs one node (the script maps task ids to nodes)."""

    name: str  # the job name's node part: array/<kind>/<digest>
    digest: str  # also the job's comment: apply finds a lost submission by name and comment
    script: str  # absolute path of the array script
    tasks: tuple[int, ...]
    after_ok: tuple[str, ...] = ()  # job ids that must all succeed first
    after_corr: str | None = None  # array id whose task t each task t waits for
    throttle: int | None = None  # at most this many tasks at once (%N)


class Executor(ABC):
    """A scheduler. Executors without job arrays keep array_limit() 0 and get one node per submit."""

    name: str

    @abstractmethod
    def submit(self, plan: Plan, node: Node, parent_job_ids: list[str]) -> str:
        """Submit one node, held until every parent job succeeded; return the job id."""

    @abstractmethod
    def jobs(self, plan: Plan) -> dict[str, JobInfo]:
        """Every job the scheduler knows for this plan's experiment, by job id, in one query."""

    @abstractmethod
    def cancel(self, job_ids: list[str]) -> None:
        """Cancel these jobs (`123` or array tasks `123_4`); unknown ids are ignored."""

    def array_limit(self) -> int:
        """Task ids of an array must stay below this (SLURM's MaxArraySize); 0: no arrays."""
        return 0

    def submit_array(self, plan: Plan, array: ArraySubmission) -> str:
        """Submit one job array; return its array job id (task t is `<id>_<t>`)."""
        raise NotImplementedError(f"the {self.name} executor has no job arrays")

    def check_room(self, n_jobs: int) -> None:
        """Raise a CruijffError when `n_jobs` more jobs cannot be queued (cluster or user limits)."""
