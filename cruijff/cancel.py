"""`cruijff cancel`: stop the selected nodes' pending and running jobs and record them cancelled.

With the plan's lock (no apply running): one scheduler query, one scancel for every job, and
one transaction that records them cancelled in state.db (so status says `cancelled` even where
sacct is absent and the job script's end record says 143).

While a local apply runs the jobs (it holds the lock, and only it may start or record them):
cancel appends the job ids to `<output_dir>/.cruijff.cancel`, which that apply's executor holds
while its jobs run and reads between two scheduling steps (cruijff/executors/local.py); the
apply kills them, records them cancelled (their children: blocked), and cancel waits until
state.db says so.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cruijff.artifact import load_plan
from cruijff.errors import SchedulerError, StateError
from cruijff.executors.base import CANCELLED, Executor
from cruijff.executors.local import CANCEL_REQUESTS, REQUEST_REASON
from cruijff.lock import holder, plan_lock
from cruijff.observe import LIVE
from cruijff.selectors import select
from cruijff.state import State, Submission

RESULT_VERSION = 1
CONFIRM_S = 30.0  # how long cancel waits for the running apply to record the cancellations
REASON = REQUEST_REASON


def cancel(plan_dir: str | Path, executor: Executor, *, only: str | None = None,
           confirm_s: float = CONFIRM_S) -> dict[str, Any]:
    plan = load_plan(plan_dir)
    selected = select(plan, only)
    with ExitStack() as stack:
        try:
            stack.enter_context(plan_lock(plan.output_dir, "cancel"))
        except StateError:
            rows = _unfinished_local(plan.output_dir)
            if not rows or not (Path(plan.output_dir) / CANCEL_REQUESTS).exists():
                raise  # no local apply running jobs: a SLURM apply submitting, or a plan
            return _ask_running_apply(plan, [r for r in rows if r.node_id in selected], executor, only, confirm_s)
        cancelled = _cancel_locked(plan, selected, executor)
    return _result(plan, cancelled)


def _result(plan, cancelled: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "schema_version": RESULT_VERSION,
        "kind": "cruijff.cancel",
        "output_dir": plan.output_dir,
        "cancelled": [{"node": n, "job_id": j} for n, j in cancelled],
    }


def _cancel_locked(plan, selected: set[str], executor: Executor) -> list[tuple[str, str]]:
    from cruijff.apply import ApplyResult, _adopt, observe_plan
    from cruijff.executors.local import kill_group

    with State(plan.output_dir) as state:
        obs = observe_plan(plan, state, executor)
        obs = _adopt(plan, state, obs, executor, ApplyResult(plan.output_dir, executor.name, False, {}))
        live = [obs[n.id] for n in plan.nodes if n.id in selected and obs[n.id].state in LIVE]
        for o in live:
            if o.orphan_pid:
                kill_group(o.orphan_pid)
        ids = [o.adopt or o.job_id for o in live if not o.orphan_pid]
        if ids:
            executor.cancel(ids)
        current = state.current()
        with state.conn:  # one transaction for all of them (5,000 commits would take seconds)
            state.conn.execute("BEGIN IMMEDIATE")
            for o in live:
                sub = current.get(o.node_id)
                if sub is not None and sub.job_id == (o.adopt or o.job_id):
                    state.record_final(sub.id, CANCELLED, reason=REASON)
    return [(o.node_id, o.adopt or o.job_id) for o in live]


def _unfinished_local(output_dir: str) -> list[Submission]:
    """Local jobs state.db holds without a final state: queued or running in the live apply."""
    with State(output_dir, create=False) as state:
        current = state.current()
    return [s for s in current.values() if s.executor == "local" and s.job_id and not s.final_state]


def _ask_running_apply(plan, rows: list[Submission], executor: Executor, only: str | None,
                       confirm_s: float) -> dict[str, Any]:
    """Ask the apply that runs these local jobs to cancel them; wait until it recorded it."""
    if not rows:
        return _result(plan, [])
    who = holder(plan.output_dir) or {}
    request = json.dumps({"job_ids": [r.job_id for r in rows], "pid": os.getpid(), "time": time.time()})
    path = Path(plan.output_dir) / CANCEL_REQUESTS
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (request + "\n").encode())  # one write: never interleaved with another request
    finally:
        os.close(fd)
    ids = {r.id for r in rows}
    deadline = time.monotonic() + confirm_s
    while True:
        with State(plan.output_dir, create=False) as state:
            done = {s.id: s for s in state.all() if s.id in ids and s.final_state}
        if holder(plan.output_dir) is None and len(done) < len(ids):  # that apply ended or died
            return cancel(plan.output_dir, executor, only=only, confirm_s=confirm_s)
        if len(done) == len(ids):
            return _result(plan, [(s.node_id, s.job_id) for s in done.values() if s.final_state == CANCELLED])
        if time.monotonic() > deadline:
            raise SchedulerError(
                f"asked the running apply (pid {who.get('pid', '?')}) to cancel {len(ids)} local job(s), but "
                f"after {confirm_s:.0f} s it had recorded only {len(done)} of them",
                hint="it may be stuck killing a job; stop it with Ctrl-C or `kill PID` (its jobs are killed "
                     "with it) and re-run `cruijff cancel`",
            )
        time.sleep(0.1)
