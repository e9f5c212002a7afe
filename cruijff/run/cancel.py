"""`cruijff cancel`: stop the selected nodes' pending and running jobs and record them cancelled.

With the plan's lock (no apply running): `cancel_locked` — one scheduler query, one scancel for
every job, and one transaction that records them cancelled in state.db (cruijff/run/stop.py, which
apply uses too for the jobs it supersedes).

While a local apply runs the jobs (it holds the lock, and only it may start or record them):
cancel appends the job ids to `<output_dir>/.cruijff.cancel`, which that apply's executor holds
while its jobs run and reads between two scheduling steps (cruijff/run/executors/local.py); the
apply kills them, records them cancelled (their children: blocked), and cancel waits until
state.db says so.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from cruijff.errors import SchedulerError, StateError
from cruijff.lock import holder
from cruijff.plan import load_plan
from cruijff.run.executors.base import CANCELLED, Executor
from cruijff.run.executors.local import CANCEL_REQUESTS
from cruijff.run.observe import LIVE, adopt, plan_view
from cruijff.run.reconcile import settle_intents
from cruijff.run.selectors import select
from cruijff.run.state import State, Submission, apply_lock
from cruijff.run.stop import Stop, stop_jobs

RESULT_VERSION = 1
CONFIRM_S = 30.0  # how long cancel waits for the running apply to record the cancellations


def cancel(plan_dir: str | Path, executor: Executor, *, only: str | None = None,
           confirm_s: float = CONFIRM_S) -> dict[str, Any]:
    """`cruijff cancel`: with the plan's lock, or through the local apply that holds it."""
    try:
        return cancel_locked(plan_dir, executor, only=only)
    except StateError:
        plan = load_plan(plan_dir)
        if holder(plan.output_dir) is None:
            raise  # not the lock: state.db itself
        rows = _unfinished_local(plan.output_dir)
        if not rows or not (Path(plan.output_dir) / CANCEL_REQUESTS).exists():
            raise  # no local apply running jobs: a SLURM apply submitting, or a plan
        selected = select(plan, only)
        return _ask_running_apply(plan, [r for r in rows if r.node_id in selected], executor, only, confirm_s)


def cancel_locked(plan_dir: str | Path, executor: Executor, *, only: str | None = None) -> dict[str, Any]:
    """Cancel the selected nodes' pending and running jobs; state.db remembers they were cancelled,
    so status says `cancelled` even where sacct is absent and the job script's end record says 143.
    Without --only, jobs of nodes that left the plan are cancelled too; an sbatch an interrupted
    apply left in flight is waited for first, so its job cannot land after the cancel.
    With the plan's lock (StateError while an apply holds it: `cancel` then asks that apply)."""
    plan = load_plan(plan_dir)
    selected = select(plan, only)
    reason = "cancelled by `cruijff cancel`"
    with apply_lock(plan.output_dir, "cancel"), State(plan.output_dir) as state:
        settle_intents(plan, state, executor)
        view = plan_view(plan, state, executor)
        adopt(plan, state, view.obs, executor)
        live = [view.obs[n.id] for n in plan.nodes if n.id in selected and view.obs[n.id].state in LIVE]
        removed = view.removed if only is None else []
        extra = [r.job_id for r in removed] + [j for d in view.duplicates if d.node_id in selected for j in d.extra]
        stop_jobs(state, executor, [Stop(o.adopt or o.job_id, reason, o.orphan_pid) for o in live]
                  + [Stop(j, reason) for j in extra])
    return {
        "schema_version": RESULT_VERSION,
        "kind": "cruijff.cancel",
        "output_dir": plan.output_dir,
        "cancelled": [{"node": o.node_id, "job_id": o.adopt or o.job_id} for o in live],
        "removed_cancelled": [{"node": r.node_id, "job_id": r.job_id} for r in removed],
    }


def _result(plan, cancelled: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "schema_version": RESULT_VERSION,
        "kind": "cruijff.cancel",
        "output_dir": plan.output_dir,
        "cancelled": [{"node": n, "job_id": j} for n, j in cancelled],
    }


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
