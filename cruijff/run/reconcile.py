"""Before apply decides: settle what an interrupted apply left in flight, and find (and stop) the
jobs that should not be there (duplicates of one node, jobs of nodes that left the plan).

Why: exactly once must hold even when apply dies while an sbatch is still running (a busy
controller takes seconds) or when sbatch timed out but slurmctld queues the job later. An intent
row without a job id is settled from the sbatch journal (executors/slurm/cli.py: journal_runner) and
the queue, waiting while that sbatch may still create its job; only then is anything submitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cruijff.errors import SchedulerError
from cruijff.run.executors.base import PENDING, RUNNING, Executor, JobInfo
from cruijff.plan import Plan
from cruijff.run.state import REFUSED, State, Submission
from cruijff.run.stop import Stop, stop_jobs

LIVE = (PENDING, RUNNING)
POLL_RUNNING_S = 0.2  # while an sbatch runs: look at its journal's lock again (cheap)
POLL_QUEUE_S = 1.0  # while a job may still land: ask the scheduler again


def _job_key(job_id: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in job_id.replace("_", ".").split("."))


def _intent_key(sub: Submission) -> tuple[str, str]:
    """(job name part, comment) the intent's sbatch used: an array's name and digest, or node and hash."""
    if sub.batch:
        return sub.batch, sub.batch.rsplit("/", 1)[-1]
    return sub.node_id, sub.hash


def settle_intents(plan: Plan, state: State, executor: Executor, *, announce: Callable[[int, float], None] | None = None,
                   clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None) -> float:
    """Resolve every intent without a job id that an sbatch may still turn into a job: its job id
    from the journal, a refusal, or — while the sbatch runs or its job may still land — wait and
    look again. Returns the seconds waited. Raises SchedulerError when an sbatch runs on too long."""
    clock = clock or time.time
    sleep = sleep or time.sleep
    started = clock()
    outcome_of = getattr(executor, "submission_outcome", None)
    if outcome_of is None:
        return 0.0
    while True:
        groups: dict[tuple[str, str], list[Submission]] = {}
        for sub in state.current().values():
            if sub.job_id is None and sub.final_state is None and sub.executor == executor.name:
                groups.setdefault(_intent_key(sub), []).append(sub)
        if not groups:
            return clock() - started
        waiting: dict[tuple[str, str], float] = {}
        running = 0
        for (name, comment), subs in groups.items():
            out = outcome_of(plan, name, comment, min(s.created for s in subs))
            rows = [s.id for s in subs]
            if out.job_id:
                if subs[0].batch:
                    state.record_array_jobs(rows, out.job_id)
                else:
                    state.record_job(rows[0], out.job_id)
            elif out.refused:
                state.record_refused(rows, out.refused)
            elif out.wait_until is not None and (out.running or out.wait_until > clock()):
                if clock() > out.wait_until:
                    raise SchedulerError(
                        f"an sbatch of {name} started by an interrupted apply is still running after "
                        f"{clock() - min(s.created for s in subs):.0f} s; nothing was submitted",
                        hint="wait for it to finish (ps -C sbatch) or kill it, then re-run `cruijff apply`")
                waiting[(name, comment)] = out.wait_until
                running += out.running
        if not waiting:
            return clock() - started
        if announce is not None:
            announce(len(waiting), max(waiting.values()) - clock())
        if running == len(waiting):  # every one still runs: its journal will say what became of it
            sleep(POLL_RUNNING_S)
            continue
        # A job that is in the queue already needs no more waiting: apply adopts it by name.
        known = state.known_job_ids()
        landed = {(i.node_id, i.node_hash) for j, i in executor.jobs(plan).items() if j not in known}
        if all(key in landed for key in waiting):
            return clock() - started
        sleep(POLL_QUEUE_S)


@dataclass(frozen=True)
class Duplicate:
    node_id: str
    hash: str | None
    keep: str  # the oldest live job
    extra: tuple[str, ...]  # the newer ones: cancelled by apply


def _owner(job_id: str, info: JobInfo, node_ids: set[str], row_of: dict[str, Submission]) -> tuple[str, str | None] | None:
    if info.node_id in node_ids:
        return info.node_id, info.node_hash
    row = row_of.get(job_id)
    return (row.node_id, row.hash) if row is not None else None


def duplicates(plan: Plan, jobs: dict[str, JobInfo], rows: list[Submission]) -> list[Duplicate]:
    """Nodes with more than one live job of the same hash (pure)."""
    node_ids = {n.id for n in plan.nodes}
    row_of = {r.job_id: r for r in rows if r.job_id}
    live: dict[tuple[str, str | None], list[str]] = {}
    for job_id, info in jobs.items():
        if info.state not in LIVE:
            continue
        owner = _owner(job_id, info, node_ids, row_of)
        if owner is not None and owner[0] in node_ids:
            live.setdefault(owner, []).append(job_id)
    out = []
    for (node_id, node_hash), job_ids in live.items():
        if len(job_ids) > 1:
            ordered = sorted(job_ids, key=_job_key)
            out.append(Duplicate(node_id, node_hash, ordered[0], tuple(ordered[1:])))
    return sorted(out, key=lambda d: d.node_id)


@dataclass(frozen=True)
class Removed:
    node_id: str  # a node id the plan no longer has
    job_id: str
    state: str


def removed_jobs(plan: Plan, jobs: dict[str, JobInfo], rows: list[Submission]) -> list[Removed]:
    """Live jobs of nodes that left the plan (pure): known from state.db, or array tasks that this
    plan's own array scripts name after such nodes."""
    node_ids = {n.id for n in plan.nodes}
    out: dict[str, Removed] = {}
    for r in rows:
        if r.job_id and r.node_id not in node_ids and r.final_state != REFUSED:
            info = jobs.get(r.job_id)
            if info is not None and info.state in LIVE:
                out[r.job_id] = Removed(r.node_id, r.job_id, info.state)
    known = {r.job_id for r in rows if r.job_id}
    for job_id, info in jobs.items():
        named = "_" in job_id and info.node_id and not info.node_id.startswith("array/")
        if named and job_id not in known and info.node_id not in node_ids and info.state in LIVE:
            out[job_id] = Removed(info.node_id, job_id, info.state)
    return sorted(out.values(), key=lambda r: (r.node_id, _job_key(r.job_id)))


def drop_duplicates(plan: Plan, state: State, dups: list[Duplicate], executor: Executor) -> set[str]:
    """Keep each node's oldest live job, cancel the newer ones; returns the nodes whose recorded
    job was one of those (their live children waited on it: apply's decide() resubmits them)."""
    if not dups:
        return set()
    current = state.current()
    rewired: set[str] = set()
    for d in dups:  # first record the kept job: a crash before the cancel finds the duplicate again
        sub = current.get(d.node_id)
        if sub is None or sub.job_id != d.keep:
            state.record_adopted(d.node_id, d.hash or plan.node(d.node_id).hash,
                                 sub.executor if sub else executor.name, d.keep,
                                 reason=f"the oldest of duplicate jobs {', '.join((d.keep, *d.extra))}")
            if sub is not None and sub.job_id in d.extra:
                rewired.add(d.node_id)
    stop_jobs(state, executor, [Stop(j, f"a duplicate of job {d.keep}: cancelled by apply")
                                for d in dups for j in d.extra])
    return rewired


def cancel_removed(state: State, removed: list[Removed], executor: Executor) -> None:
    """Jobs of nodes that left the plan (say, a grid value removed) would run for nothing."""
    stop_jobs(state, executor, [Stop(r.job_id, "its node left the plan: cancelled by apply") for r in removed])
