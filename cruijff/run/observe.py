"""What is true about each node now: state.db, the scheduler's one answer and record.jsonl merged.

Shared by apply (what to submit) and status (what to show). Pure: it takes what was read and
returns one Observation per node, so it is tested without a scheduler.

Jobs are matched to nodes by job id (state.db), else by job name: `<experiment>:<node id>` for
a plain job, `<experiment>:array/<kind>/<digest>` plus the task id for a node in a job array.

Precedence for a submitted job: a final state apply recorded (local runs) > the scheduler's
state > the job's own record.jsonl > inference (a SLURM job that left the queue without an end
record failed or was cancelled; an unfinished local job is pending or running while the apply
that queued it holds the plan's lock, else that apply died: it was interrupted).
"""

from __future__ import annotations

from dataclasses import dataclass

from cruijff.run.executors.base import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, UNKNOWN, JobInfo
from cruijff.plan import Plan
from cruijff.run.records import Attempt
from cruijff.run.state import Submission

INTERRUPTED = "interrupted"  # a local job stopped by Ctrl-C or a dead apply: resumed by the next apply
NOT_SUBMITTED = "not_submitted"
LIVE = (PENDING, RUNNING)
INTENT_SLACK_S = 5.0  # clock slack when matching a record's start to an intent


@dataclass(frozen=True)
class Observation:
    node_id: str
    state: str  # pending running completed failed cancelled interrupted not_submitted
    job_id: str | None = None
    hash: str | None = None  # the submitted job's node hash
    outdated: bool = False  # submitted with another hash than the plan's
    executor: str | None = None
    exit_code: int | None = None
    start: float | None = None
    end: float | None = None
    reason: str | None = None
    submission: Submission | None = None
    adopt: str | None = None  # a job of this node that state.db did not record (apply records it)
    orphan_pid: int | None = None  # a local job still running after its apply died

    @property
    def satisfied(self) -> bool:
        """Submitted with the plan's hash and not failed: nothing to do for it."""
        return not self.outdated and self.state in (PENDING, RUNNING, COMPLETED)


def _job_key(job_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in job_id.replace("_", ".").split("."))


def observe(
    plan: Plan,
    current: dict[str, Submission],
    jobs: dict[str, JobInfo],
    attempts: dict[str, list[Attempt]],
    known_job_ids: set[str],
    orphan_check=None,
    apply_alive: bool = False,
) -> dict[str, Observation]:
    """One Observation per plan node. `orphan_check(pid, job_id) -> bool` for local jobs;
    `apply_alive`: an apply holds the plan's lock, so its unfinished local jobs are live."""
    by_node: dict[str, list[JobInfo]] = {}
    for info in jobs.values():
        if info.node_id:
            by_node.setdefault(info.node_id, []).append(info)
    out: dict[str, Observation] = {}
    for node in plan.nodes:
        sub = current.get(node.id)
        if sub is None or sub.job_id is None:
            infos = by_node.get(node.id, [])
            if sub is not None and sub.batch:  # its array's tasks, named by node or by array
                infos = infos + by_node.get(sub.batch, [])
            node_attempts = attempts.get(node.id, []) if sub is not None or infos else []
            out[node.id] = _unrecorded(node.id, node.hash, sub, infos, node_attempts, known_job_ids)
        else:
            info = jobs.get(sub.job_id)
            queued = not sub.final_state and info is not None and info.state == PENDING
            node_attempts = [] if queued else attempts.get(node.id, [])  # a queued job has not started
            obs = _recorded(sub, info, node_attempts, orphan_check, apply_alive)
            out[node.id] = _with(obs, outdated=True) if sub.hash != node.hash else obs
    return out


def _with(obs: Observation, **changes) -> Observation:
    from dataclasses import replace

    return replace(obs, **changes)


def _from_info(node_id: str, info: JobInfo, attempt: Attempt | None, **extra) -> Observation:
    extra.setdefault("hash", info.node_hash)
    return Observation(
        node_id=node_id, state=info.state, job_id=info.job_id,
        exit_code=info.exit_code if info.exit_code is not None else (attempt.exit_code if attempt else None),
        start=(attempt.start if attempt and attempt.start else info.start),
        end=(attempt.end if attempt and attempt.end else info.end),
        reason=info.reason, **extra,
    )


def _attempt_of(attempts: list[Attempt], job_id: str) -> Attempt | None:
    for attempt in reversed(attempts):
        if attempt.job_id == job_id:
            return attempt
    return None


def _unrecorded(node_id, node_hash, sub, infos, attempts, known) -> Observation:
    """No job id in state: adopt a job of ours the scheduler (or, after an intent, a record) knows."""
    want_hash = sub.hash if sub else node_hash
    if sub is not None and sub.batch:  # an array's intent: its task in the array of that name
        suffix = f"_{sub.task}"
        candidates = [i for i in infos if i.job_id not in known and i.job_id.endswith(suffix)]
    else:
        candidates = [i for i in infos if i.job_id not in known and i.node_hash in (None, want_hash)]
    if candidates:
        info = max(candidates, key=lambda i: _job_key(i.job_id))
        obs = _from_info(node_id, info, _attempt_of(attempts, info.job_id), submission=sub, adopt=info.job_id,
                         executor=sub.executor if sub else None)
        return _with(obs, hash=want_hash, outdated=want_hash != node_hash)
    if sub is not None:  # an intent: did its job start, then vanish from the queue?
        for attempt in reversed(attempts):
            if attempt.job_id and attempt.job_id not in known and (attempt.start or 0) >= sub.created - INTENT_SLACK_S:
                state = (COMPLETED if attempt.exit_code == 0 else FAILED) if attempt.finished else RUNNING
                return Observation(node_id, state, attempt.job_id, sub.hash, sub.hash != node_hash, sub.executor,
                                   attempt.exit_code, attempt.start, attempt.end, None, sub, adopt=attempt.job_id)
    return Observation(node_id, NOT_SUBMITTED, submission=sub, executor=sub.executor if sub else None,
                       reason=(sub.reason if sub else None))


def _recorded(sub: Submission, info: JobInfo | None, attempts: list[Attempt], orphan_check,
              apply_alive: bool = False) -> Observation:
    attempt = _attempt_of(attempts, sub.job_id)
    base = dict(node_id=sub.node_id, job_id=sub.job_id, hash=sub.hash, executor=sub.executor, submission=sub,
                start=attempt.start if attempt else None, end=attempt.end if attempt else None)
    if sub.final_state:
        return Observation(state=sub.final_state, exit_code=sub.exit_code, reason=sub.reason, **base)
    if info is not None and info.state != UNKNOWN:
        return _from_info(sub.node_id, info, attempt, hash=sub.hash, executor=sub.executor, submission=sub)
    if attempt is not None and attempt.finished:
        return Observation(state=COMPLETED if attempt.exit_code == 0 else FAILED, exit_code=attempt.exit_code, **base)
    if sub.executor == "local" and apply_alive:  # the apply that queued it runs it (or will)
        started = sub.pid is not None or (attempt is not None and attempt.start is not None)
        return Observation(state=RUNNING if started else PENDING, **base)
    if sub.executor == "local":
        if orphan_check is not None and orphan_check(sub.pid, sub.job_id):
            return Observation(state=RUNNING, reason="left running by an apply that died",
                               orphan_pid=sub.pid, **base)
        return Observation(state=INTERRUPTED, reason="its apply stopped before it finished", **base)
    if attempt is not None:
        return Observation(state=FAILED, reason="left the queue without an end record", **base)
    return Observation(state=CANCELLED, reason="left the queue without starting", **base)
