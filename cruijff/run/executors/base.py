"""The executor interface: what `apply`, `status` and `cancel` need from a scheduler."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from cruijff.errors import SchedulerError
from cruijff.plan import Node, Plan

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
    scheduler_state: str | None = None  # the scheduler's own word for a finished job (sacct: OUT_OF_MEMORY, NODE_FAIL)


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


class SubmitRefused(SchedulerError):
    """The scheduler said no (bad resources, partition, account): nothing was queued, although
    SLURM may keep a FAILED record of the refused job (`phantom`, its id when found)."""

    def __init__(self, message: str, *, hint: str | None = None, phantom: str | None = None):
        super().__init__(message, hint=hint)
        self.phantom = phantom


class SubmitUnknown(SchedulerError):
    """The submission's outcome is unknown (a timeout): the job may still appear later."""


@dataclass(frozen=True)
class Outcome:
    """What became of an sbatch an earlier, interrupted apply started (Executor.submission_outcome).

    job_id: the job it created; refused: sbatch's refusal; wait_until: it may still be in flight
    (its process runs, or it timed out and the job may land) until this unix time. All empty:
    nothing was sent, or what was sent is settled and not in the queue.
    """

    job_id: str | None = None
    refused: str | None = None
    wait_until: float | None = None
    running: bool = False  # an sbatch process of it is still running


class Executor(ABC):
    """A scheduler. Executors without job arrays keep array_limit() 0 and get one node per submit."""

    name: str
    runs_jobs = False  # True: apply itself runs the jobs (local) and waits for them through wait()

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

    def submission_outcome(self, plan: Plan, name: str, comment: str, since: float) -> Outcome:
        """What became of a submission named `name` (node id or array name) with this comment
        (node hash or array digest), attempted at `since` by an apply that died. Executors whose
        submissions cannot outlive apply keep this default: nothing in flight."""
        return Outcome()

    def batch_script(self, job_id: str) -> str | None:
        """The batch script the scheduler holds for a live job, where it keeps one."""
        return None

    def wait(self, on_event: Callable[[JobInfo, int | None], None] | None = None) -> dict[str, JobInfo]:
        """Run the submitted jobs to their end, calling on_event(info, pid) at each start and end
        (executors with runs_jobs). A scheduler runs its jobs on its own: apply does not wait."""
        raise NotImplementedError(f"the {self.name} executor's jobs run on their own")
