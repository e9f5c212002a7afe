"""Stopping jobs: the one place that stops queued or running jobs and records them cancelled.

Apply stops the jobs of nodes it resubmits (superseded), the newer of duplicate jobs and the jobs of
nodes that left the plan; `cruijff cancel` stops the selected nodes' jobs. Each goes through
`stop_jobs`: a local job that a dead apply left running is killed by its process group (no executor
runs it any more), every other job is cancelled in one `executor.cancel` call (one scancel), and then
every unfinished state.db row of each stopped job is recorded cancelled, with why, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from cruijff.run.executors.base import CANCELLED, Executor
from cruijff.run.executors.local import kill_group
from cruijff.run.state import State


@dataclass(frozen=True)
class Stop:
    job_id: str
    reason: str  # recorded in state.db: why it was cancelled
    orphan_pid: int | None = None  # a local job left running by an apply that died: kill its process group


def stop_jobs(state: State, executor: Executor, stops: list[Stop]) -> None:
    if not stops:
        return
    for s in stops:
        if s.orphan_pid:
            kill_group(s.orphan_pid)
    ids = [s.job_id for s in stops if not s.orphan_pid]
    if ids:
        executor.cancel(ids)
    with state.conn:  # one transaction: 5,000 commits of their own took seconds
        state.conn.execute("BEGIN IMMEDIATE")
        for s in stops:
            state.record_final_job(s.job_id, CANCELLED, s.reason)
