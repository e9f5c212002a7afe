"""`cruijff status`: one scheduler query per refresh, merged with state.db and record.jsonl.

collect() returns data (StatusReport) and grid() lays it out: rows are runs (a fine-tune and its
evaluations) and base models, columns are stages (finetune, then each task at each epoch, then
each task on the base model); cruijff.commands.draw draws it with rich.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cruijff.plan import load_plan
from cruijff.run.executors.base import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, Executor
from cruijff.plan import BASE_EVAL, CHECKPOINT_EVAL, EVAL, EVAL_KINDS, FINETUNE, Node, Plan
from cruijff.run.observe import INTERRUPTED, LIVE, NOT_SUBMITTED, STORE, Observation, plan_view
from cruijff.run.records import attempt_note, last_attempt, read_attempts
from cruijff.run.selectors import select
from cruijff.run.state import State

STATUS_VERSION = 1
GRID_ROWS = 40  # above this many rows, `status` summarises the grid by stage (--all draws it whole)
NOTES = 10  # in a summary, failed nodes and blockers listed before "and N more"
# Display states, in the order counts are shown.
DONE, BLOCKED, NOT_SUBMITTED_TEXT = "done", "blocked", "not submitted"
DISPLAY_ORDER = ("running", "pending", "done", "failed", "blocked", "cancelled", "not submitted")
_DISPLAY = {PENDING: "pending", RUNNING: "running", COMPLETED: DONE, FAILED: "failed",
            CANCELLED: "cancelled", INTERRUPTED: "cancelled", NOT_SUBMITTED: NOT_SUBMITTED_TEXT}


def display_state(state: str) -> str:
    """A scheduler or apply state in status's words (completed → done, interrupted → cancelled)."""
    return _DISPLAY.get(state, state)


@dataclass(frozen=True)
class NodeStatus:
    id: str
    kind: str
    state: str  # pending running done failed blocked cancelled "not submitted"
    blocked_by: str | None = None
    job_id: str | None = None
    elapsed_s: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    changed: bool = False  # submitted with an older hash: the next apply resubmits it
    score: tuple[str, float] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    attempts: int | None = None  # runs of its current job (a requeued job keeps its id)
    note: str | None = None  # what happened to them: "attempt 2, resumed at step 40 after the time limit"

    @property
    def label(self) -> str:
        """`blocked-by-<node id>` for blocked nodes, else the state."""
        return f"blocked-by-{self.blocked_by}" if self.state == BLOCKED else self.state

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "state": self.state, "label": self.label,
            "blocked_by": self.blocked_by, "job_id": self.job_id,
            "elapsed_s": None if self.elapsed_s is None else round(self.elapsed_s, 1),
            "exit_code": self.exit_code, "reason": self.reason, "changed": self.changed,
            "score": {"name": self.score[0], "value": self.score[1]} if self.score else None,
            "attrs": self.attrs, "attempts": self.attempts, "note": self.note,
        }


@dataclass(frozen=True)
class StatusReport:
    experiment: str
    output_dir: str
    executor: str
    time: float
    nodes: tuple[NodeStatus, ...]
    removed: tuple[Any, ...] = ()  # live jobs of nodes that left the plan (reconcile.Removed)
    duplicates: tuple[Any, ...] = ()  # nodes with more than one live job (reconcile.Duplicate)
    store: dict[str, Any] | None = None  # reused nodes and GPU-hours saved (cruijff.store.reuse.saved)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in DISPLAY_ORDER}
        for n in self.nodes:
            out[n.state] = out.get(n.state, 0) + 1
        return {k: v for k, v in out.items() if v}

    @property
    def ok(self) -> bool:
        """No node failed or is blocked (`status` exits 1 otherwise)."""
        return not any(n.state in ("failed", BLOCKED) for n in self.nodes)

    @property
    def settled(self) -> bool:
        """Nothing pending or running: watching further would show nothing new."""
        return not any(n.state in ("pending", "running") for n in self.nodes)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "schema_version": STATUS_VERSION,
            "kind": "cruijff.status",
            "experiment": self.experiment,
            "output_dir": self.output_dir,
            "executor": self.executor,
            "time": round(self.time, 3),
            "counts": self.counts(),
            "ok": self.ok,
            "nodes": [n.as_dict() for n in self.nodes],
            "grid": grid(self.nodes),
        }
        if self.removed:  # present only when there are some
            out["removed_jobs"] = [{"node": r.node_id, "job_id": r.job_id, "state": r.state} for r in self.removed]
        if self.store is not None:
            out["store"] = self.store
        if self.duplicates:
            out["duplicate_jobs"] = [{"node": d.node_id, "jobs": [d.keep, *d.extra]} for d in self.duplicates]
        return out


def node_statuses(plan: Plan, obs: dict[str, Observation], now: float,
                  score: Callable[[str], tuple[str, float] | None] | None = None) -> list[NodeStatus]:
    """Display states: a node not running or done below a failed/cancelled ancestor is blocked."""
    shown: dict[str, NodeStatus] = {}
    for node in plan.nodes:  # topological: parents first
        o = obs[node.id]
        state = _DISPLAY.get(o.state, o.state)
        changed = o.outdated
        if changed and o.state not in LIVE:
            state = NOT_SUBMITTED_TEXT  # the plan's version of this node was never submitted
        blocked_by = None
        if state in ("pending", "cancelled", NOT_SUBMITTED_TEXT):
            for p in node.parents:
                parent = shown[p]
                if parent.state in ("failed", "cancelled"):
                    blocked_by = p
                elif parent.state == BLOCKED:
                    blocked_by = parent.blocked_by
                if blocked_by:
                    state = BLOCKED
                    break
        elapsed = None
        if o.start is not None and state in ("running", DONE, "failed", "cancelled"):
            elapsed = max(0.0, (o.end if o.end is not None else now) - o.start)
        headline = None
        if score is not None and state == DONE and node.kind in EVAL_KINDS:
            headline = score(str(Path(plan.output_dir) / node.id / "logs"))
        reason = o.reason
        if state == "failed" and o.scheduler_state not in SCHEDULER_SAYS_MOST:
            # what the job itself said failed (records.record_error) says most
            attempt = last_attempt(Path(plan.output_dir) / node.record, o.job_id)
            reason = ((attempt.reason if attempt else None)
                      or output_reason(Path(plan.output_dir) / node.id, o.job_id) or reason)
        attempts, note = None, None
        if node.kind == FINETUNE and o.job_id and state in ("pending", "running", DONE, "failed"):
            attempts, note = attempt_note(read_attempts(Path(plan.output_dir) / node.record), o.job_id)
        elif node.kind in (EVAL, BASE_EVAL) and o.job_id and state in ("running", DONE, "failed"):
            n, text = attempt_note(read_attempts(Path(plan.output_dir) / node.record), o.job_id)
            if text is not None:  # a continued evaluation ("continued its log, 12 of 30 samples kept")
                attempts, note = n, text
        shown[node.id] = NodeStatus(node.id, node.kind, state, blocked_by, o.job_id, elapsed, o.exit_code,
                                    reason, changed, headline, dict(node.attrs), attempts or None, note)
    return list(shown.values())


# a job ended by the scheduler (the kernel's OOM killer, a dead node): its own record says less
SCHEDULER_SAYS_MOST = ("OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL")
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*(?:Error|Exception)|error)\b[^\n]*:\s*\S")
OUTPUT_TAIL = 65536  # bytes of a job's output read for its reason


def output_reason(node_dir: Path, job_id: str | None) -> str | None:
    """The last exception line of a failed job's output (a traceback ends with it), for a step that
    recorded no error itself (a torchtune traceback, a shell command that failed)."""
    from cruijff.run.executors.local import JOB_OUT

    for name in ([f"slurm-{job_id}.out"] if job_id else []) + [JOB_OUT]:
        try:
            with open(node_dir / name, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - OUTPUT_TAIL))
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            continue
        found = next((line.strip() for line in reversed(lines) if _EXCEPTION.match(line.strip())), None)
        if found:
            return found
    return None


SCORE_CACHE = ".cruijff-scores.json"  # headline scores by log dir, with the listing they were read from


class _Headlines:
    """Each done eval's headline score, read from its inspect log once: later refreshes find it in
    `<output_dir>/.cruijff-scores.json` while the log directory's listing (names, sizes, mtimes)
    is unchanged (4,000 logs: seconds to read, 0.1 s to list)."""

    def __init__(self, output_dir: str, headline: Callable[[str], tuple[str, float] | None]):
        self.path = Path(output_dir) / SCORE_CACHE
        self.headline = headline
        try:
            cache = json.loads(self.path.read_text())
        except (OSError, ValueError):
            cache = {}
        self.cache: dict[str, Any] = cache if isinstance(cache, dict) else {}
        self.changed = False

    def __call__(self, log_dir: str) -> tuple[str, float] | None:
        try:
            with os.scandir(log_dir) as entries:
                stats = [(e.name, e.stat()) for e in entries if e.is_file()]
            listing = sorted([name, st.st_size, st.st_mtime_ns] for name, st in stats)
        except OSError:
            return None
        hit = self.cache.get(log_dir)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == listing:
            value = hit[1]
        else:
            try:
                value = self.headline(log_dir)
            except Exception:  # a half-written or foreign log must not break status
                value = None
            self.cache[log_dir] = [listing, list(value) if value else None]
            self.changed = True
        return (str(value[0]), float(value[1])) if value else None

    def save(self) -> None:
        """Atomically, and never fatal: a read-only plan directory just keeps no cache."""
        if not self.changed:
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.cache, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _headline_reader(output_dir: str) -> _Headlines | None:
    try:
        from cruijff.results.scores import headline
    except ImportError:
        return None
    return _Headlines(output_dir, headline)


def _applying(output_dir: str) -> bool:
    """Whether an `apply` holds the plan directory's lock now (cruijff/lock.py)."""
    from cruijff.lock import holder

    who = holder(output_dir)
    return who is not None and who.get("what", "apply") == "apply"


def summarised(plan: Plan, only: str | None = None, show_all: bool = False) -> bool:
    """Whether `status` draws the grid summarised by stage: more than GRID_ROWS rows, no --all/--only."""
    return not show_all and only is None and len({_row_col(n)[0] for n in plan.nodes}) > GRID_ROWS


def collect(plan_dir: str | Path, executor: Executor, *, only: str | None = None,
            now: float | None = None, plan: Plan | None = None, scores: bool = True, store=None) -> StatusReport:
    """`plan`: the plan of plan_dir when the caller loaded it already (5,000 nodes: 50 ms).
    `scores=False` reads no eval logs (a summary shows no scores; 4,000 logs take seconds).
    `store`: the results store: done nodes not in it yet are published (cruijff/store)."""
    plan = plan or load_plan(plan_dir)
    selected = select(plan, only)
    # An apply alive before or after state.db is read owns the unfinished local rows read.
    before = _applying(plan.output_dir)
    with State(plan.output_dir, create=False) as state:
        view = plan_view(plan, state, executor, lambda: before or _applying(plan.output_dir))
    obs = view.obs
    now = time.time() if now is None else now
    reader = _headline_reader(plan.output_dir) if scores else None
    statuses = [s for s in node_statuses(plan, obs, now, reader) if s.id in selected]
    if reader is not None:
        reader.save()
    stored = None
    reused = [i for i, o in obs.items() if o.executor == STORE and i in selected]
    if store is not None or reused:
        from cruijff.store.reuse import publish_done, saved

        if store is not None:
            publish_done(store, plan, [s.id for s in statuses if s.state == DONE and s.job_id
                                       and not s.job_id.startswith("store:")])
        stored = saved(plan.output_dir, reused)
        stored.pop("nodes")
    return StatusReport(plan.experiment, plan.output_dir, executor.name, now, tuple(statuses),
                        tuple(view.removed) if only is None else (),
                        tuple(d for d in view.duplicates if d.node_id in selected), stored)


# --- the grid ------------------------------------------------------------------------------

def _row_col(n: NodeStatus | Node) -> tuple[str, str]:
    a = n.attrs
    if n.kind == FINETUNE:
        return str(a.get("run", n.id.split("/", 1)[-1])), "finetune"
    if n.kind == EVAL:
        return str(a.get("run", n.id.split("/")[1])), f"{a.get('task', n.id.rsplit('/', 1)[-1])}@e{a.get('epoch', '?')}"
    if n.kind == BASE_EVAL:
        return f"{a.get('model', n.id.split('/')[1])} (base)", f"{a.get('task', n.id.rsplit('/', 1)[-1])}@base"
    if n.kind == CHECKPOINT_EVAL:
        return f"{a.get('model', n.id.split('/')[1])} (checkpoint)", f"{a.get('task', n.id.rsplit('/', 1)[-1])}@checkpoint"
    return n.id, n.kind


def grid(nodes: tuple[NodeStatus, ...] | list[NodeStatus]) -> dict[str, Any]:
    """Rows (runs, then base models) × columns (finetune, task@epoch…, task@base) → node id."""
    rows: dict[str, dict[str, str]] = {}
    columns: list[str] = []
    order: dict[str, tuple] = {}
    for n in nodes:
        row, col = _row_col(n)
        rows.setdefault(row, {})[col] = n.id
        if col not in columns:
            columns.append(col)
            epoch = n.attrs.get("epoch")
            rank = 0 if col == "finetune" else 1 if n.kind == EVAL else 2 if n.kind in (BASE_EVAL, CHECKPOINT_EVAL) else 3
            order[col] = (rank, epoch if isinstance(epoch, int) else 0, len(columns))
    columns.sort(key=lambda c: order[c])
    return {"columns": columns, "rows": [{"label": r, "cells": cells} for r, cells in rows.items()]}
