"""What is true about each node now: state.db, the scheduler's one answer and record.jsonl merged.

Shared by apply (what to submit), cancel (what is live) and status (what to show). `plan_view`
does the reading — state.db first, then the scheduler's one `jobs()` answer per executor kind,
array tasks named after their nodes — and `observe` merges it: pure, it takes what was read and
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
from pathlib import Path
from typing import Callable

from cruijff.errors import UsageError
from cruijff.plan import Plan
from cruijff.run.executors.base import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, UNKNOWN, Executor, JobInfo
from cruijff.run.reconcile import Duplicate, Removed, duplicates, removed_jobs
from cruijff.run.records import Attempt, plan_attempts
from cruijff.run.state import REFUSED, State, Submission

INTERRUPTED = "interrupted"  # a local job stopped by Ctrl-C or a dead apply: resumed by the next apply
NOT_SUBMITTED = "not_submitted"
STORE = "store"  # the executor of a node reused from the results store (run/apply.py, cruijff/store)
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
    scheduler_state: str | None = None  # the scheduler's word for its end (OUT_OF_MEMORY, NODE_FAIL): cruijff.run.retry

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
        reason=info.reason or _STATE_REASONS.get(info.scheduler_state or ""),
        scheduler_state=info.scheduler_state, **extra,
    )


_STATE_REASONS = {"OUT_OF_MEMORY": "out of memory (OUT_OF_MEMORY)", "NODE_FAIL": "node failure (NODE_FAIL)",
                  "BOOT_FAIL": "node failure (BOOT_FAIL)"}


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


# ---- reading what is true now (state.db, then the scheduler) ------------------------------------

def scheduler_view(plan: Plan, state: State, executor: Executor) -> dict[str, JobInfo]:
    """The one `jobs()` answer per executor kind in play (the chosen one and any in state.db).
    A scheduler that fails or answers with errors raises SchedulerError: nobody guesses."""
    from cruijff.run.executors.select import make_executor

    jobs = dict(executor.jobs(plan))
    kinds = state.executors() - {executor.name}
    for kind in sorted(kinds):
        if kind in ("local", STORE):
            continue  # a dead process's local jobs are known from state.db and records only; reused ones ran elsewhere
        try:
            other = make_executor(kind, plan)
        except UsageError:
            continue  # e.g. status on a machine without SLURM: records still tell most of it
        jobs.update(other.jobs(plan))
    return jobs


@dataclass(frozen=True)
class View:
    """What is true now: each node's Observation, the scheduler's jobs (array tasks named after
    their nodes where state.db does not know them), and the jobs that should not be there."""

    obs: dict[str, Observation]
    jobs: dict[str, JobInfo]
    duplicates: list[Duplicate]
    removed: list[Removed]


def plan_view(plan: Plan, state: State, executor: Executor,
              apply_alive: Callable[[], bool] | None = None) -> View:
    """state.db first (one read), then the scheduler: a job submitted in between is unknown to
    the snapshot and found in the scheduler's answer (pending), never taken for a job that left
    the queue. `apply_alive()`, asked after that read, says whether an apply holds the lock now
    (status: its local jobs are queued or running, not interrupted)."""
    from dataclasses import replace

    from cruijff.run.executors.local import orphan_group

    rows = state.all()  # state.db first, in one read: then a job submitted meanwhile is in the queue
    current = {sub.node_id: sub for sub in rows}  # by id: a node's newest row wins
    known = {sub.job_id for sub in rows if sub.job_id}
    alive = bool(apply_alive and apply_alive())
    jobs = scheduler_view(plan, state, executor)
    jobs = name_array_tasks(plan, jobs, known, executor)
    obs = observe(plan, current, jobs, plan_attempts(plan), known, orphan_group, apply_alive=alive)
    for node_id, sub in current.items():  # sbatch refused it: nothing ran, whatever sacct keeps
        if sub.final_state == REFUSED and node_id in obs:
            obs[node_id] = replace(obs[node_id], state=NOT_SUBMITTED, job_id=None, reason=sub.reason,
                                   outdated=False, adopt=None, exit_code=None, start=None, end=None)
    return View(obs, jobs, duplicates(plan, jobs, rows), removed_jobs(plan, jobs, rows))


def name_array_tasks(plan: Plan, jobs: dict[str, JobInfo], known: set[str],
                     executor: Executor | None = None) -> dict[str, JobInfo]:
    """Array tasks state.db does not know (it was lost or moved aside) get their node's id and
    hash from the array's script — the plan's own copy under arrays/ or, where that is gone too,
    the one the scheduler holds for a live job (if it runs this plan directory) — so apply adopts
    them instead of submitting them again."""
    from dataclasses import replace

    from cruijff.run.arrays import array_members, array_root, array_script_path

    scripts: dict[str, dict[int, tuple[str, str | None]]] = {}
    out = dict(jobs)
    for job_id, info in jobs.items():
        name = info.node_id or ""
        _, _, task = job_id.partition("_")
        if job_id in known or not name.startswith("array/") or not task.isdigit():
            continue
        if name not in scripts:
            try:
                text = array_script_path(plan.output_dir, name).read_text()
            except OSError:
                fetch = getattr(executor, "batch_script", None)
                text = (fetch(job_id) if fetch is not None else None) or ""
                if array_root(text) != str(Path(plan.output_dir)):
                    text = ""  # not this plan directory's array (another plan of the same experiment)
            scripts[name] = array_members(text)
        member = scripts[name].get(int(task))
        if member is not None:
            out[job_id] = replace(info, node_id=member[0], node_hash=member[1])
    return out


def adopt(plan: Plan, state: State, obs: dict[str, Observation], executor: Executor) -> list[tuple[str, str]]:
    """Record the jobs the scheduler (or a record.jsonl) has but state.db lacks (an apply died
    between sbatch and commit); forget intents proven never submitted. Returns (node id, job id)
    of each job adopted."""
    adopted = []
    for node_id, o in obs.items():
        if o.adopt:
            if o.submission is not None and o.submission.job_id is None:
                state.record_job(o.submission.id, o.adopt)
            else:
                state.record_adopted(node_id, o.hash or plan.node(node_id).hash, o.executor or executor.name, o.adopt)
            adopted.append((node_id, o.adopt))
        elif o.state == NOT_SUBMITTED and o.submission is not None and o.submission.final_state != REFUSED:
            state.forget_intent(o.submission.id)  # neither in the scheduler nor in a record
    return adopted
