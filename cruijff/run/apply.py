"""`cruijff apply`: submit what is missing, exactly once, in topological order.

Protocol, per submission: commit an intent row to state.db, call the executor, commit the job
id. Whatever kills cruijff in between, the next apply finds the job by its name and hash in the
scheduler's one `jobs()` answer (or its record.jsonl) and records it instead of submitting it
again (see cruijff/run/observe.py). One apply per plan directory at a time (state.apply_lock).

How (_submit_all): the nodes to submit are grouped into batches (cruijff/compiler/batching.py): on SLURM a
stage of uniform shape is one job array (`--array`, evaluations waiting with `aftercorr`), so a
5,000-job experiment is a handful of sbatch calls. An array's intent rows (one per task) are
committed in one transaction before its sbatch, its `<id>_<task>` job ids in one after.

Before deciding (cruijff/run/reconcile.py): an intent whose sbatch may still be in flight (the apply
that made it died while sbatch ran, or sbatch timed out) is settled first — apply waits while it
can still create its job; a node with two live jobs keeps the older and the newer is cancelled;
live jobs of nodes that left the plan are cancelled. What is true now is read by
cruijff/run/observe.py (plan_view); every job apply or `cruijff cancel` stops (duplicates, removed
nodes' jobs, jobs superseded by a resubmission) goes through cruijff/run/stop.py.

What is submitted (decide()): within the selection plus its ancestors, in topological order, a
node is submitted when it was never submitted (or sbatch refused it), its hash changed, its parent
is being submitted now, its local run was interrupted, its parent's job was replaced, with --force
when selected, or it failed or was cancelled: with --retry-failed, or by itself (out of memory,
node failure: cruijff/run/retry.py). Selected nodes bring along the ancestors they need
(unsubmitted, changed or failed and retried); a node below a failed ancestor not retried is `blocked`.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from cruijff.compiler.batching import Batch, Dep, Ref, header_shape, make_batches
from cruijff.errors import SchedulerError, UsageError
from cruijff.plan import Node, Plan, load_plan
from cruijff.run.retry import NO_RETRIES, Retries, automatic_retries, held_reason, prepare_retries
from cruijff.run.cancel import cancel_locked as cancel  # noqa: F401  (callers import it from here)
from cruijff.run.executors.base import (CANCELLED, COMPLETED, FAILED, RUNNING, ArraySubmission, Executor, JobInfo,
                                        SubmitRefused)
from cruijff.run.observe import INTERRUPTED, LIVE, NOT_SUBMITTED, Observation, adopt, plan_view
from cruijff.run.arrays import write_array_script
from cruijff.run.reuse import from_store, preview
from cruijff.store.reuse import detach
from cruijff.run.reconcile import Duplicate, Removed, cancel_removed, drop_duplicates, settle_intents
from cruijff.run.selectors import ancestors, select
from cruijff.run.state import State, apply_lock
from cruijff.run.stop import Stop, stop_jobs

KILL_AFTER_ENV = "CRUIJFF_TEST_KILL_AFTER"  # test hook: SIGKILL ourselves after k sbatch calls
RESULT_VERSION = 1

SUBMIT, KEEP, HELD, BLOCKED = "submit", "keep", "held", "blocked"


class Progress(Protocol):
    def start(self, phase: str, total: int) -> None: ...
    def advance(self, text: str, count: int = 1) -> None: ...
    def stop(self) -> None: ...


class NoProgress:
    def start(self, phase: str, total: int) -> None: pass
    def advance(self, text: str, count: int = 1) -> None: pass
    def stop(self) -> None: pass


@dataclass(frozen=True)
class Decision:
    action: str  # submit | keep | held (failed, not retried) | blocked (below a held node)
    reason: str = ""
    blocker: str | None = None  # for blocked: the held ancestor


@dataclass
class ApplyResult:
    output_dir: str
    executor: str
    dry_run: bool
    decisions: dict[str, Decision]
    submitted: list[tuple[str, str]] = field(default_factory=list)  # (node id, job id)
    adopted: list[tuple[str, str]] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # job ids cancelled because superseded
    ancestors_added: list[str] = field(default_factory=list)
    final: dict[str, str] = field(default_factory=dict)  # local: node id -> final state, or blocked
    sbatch_calls: int = 0  # submissions made: one per job array or plain job
    removed: list[Removed] = field(default_factory=list)  # jobs of nodes that left the plan, cancelled
    duplicates: list[Duplicate] = field(default_factory=list)  # newer duplicate jobs, cancelled
    waited_s: float = 0.0  # waiting for an interrupted apply's sbatch to settle
    reused: list[tuple[str, dict]] = field(default_factory=list)  # (node id, where from): from the store
    store_refused: list[tuple[str, str]] = field(default_factory=list)  # (node id, why): run instead
    published: dict[str, str] = field(default_factory=dict)  # node id → published / present / why not

    def ids(self, action: str) -> list[str]:
        return [i for i, d in self.decisions.items() if d.action == action]

    @property
    def ok(self) -> bool:
        return not any(s in (FAILED, CANCELLED, INTERRUPTED, BLOCKED) for s in self.final.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": RESULT_VERSION,
            "kind": "cruijff.apply",
            "output_dir": self.output_dir,
            "executor": self.executor,
            "dry_run": self.dry_run,
            "submitted": [{"node": n, "job_id": j} for n, j in self.submitted],
            "submissions": self.sbatch_calls,
            "to_submit": self.ids(SUBMIT),
            "kept": self.ids(KEEP),
            "held_failed": self.ids(HELD),
            "blocked": {i: d.blocker for i, d in self.decisions.items() if d.action == BLOCKED},
            "adopted": [{"node": n, "job_id": j} for n, j in self.adopted],
            "replaced_jobs": self.replaced,
            "ancestors_added": self.ancestors_added,
            "removed_jobs": [{"node": r.node_id, "job_id": r.job_id} for r in self.removed],
            "duplicate_jobs": [{"node": d.node_id, "kept": d.keep, "cancelled": list(d.extra)}
                               for d in self.duplicates],
            "waited_s": round(self.waited_s, 1),
            "final": self.final,
            "reused": [{"node": n, **src} for n, src in self.reused], "published": self.published,
            "store_refused": [{"node": n, "reason": r} for n, r in self.store_refused],
        }


def decide(plan: Plan, obs: dict[str, Observation], selected: set[str], retry_failed: bool, *, force: bool = False,
           rewired: frozenset[str] | set[str] = frozenset(), retries: Retries = NO_RETRIES) -> dict[str, Decision]:
    """What to do with each node in the selection and its ancestors (pure; see module doc).

    force: submit the selected nodes again whatever their state. rewired: nodes whose job was
    replaced (a newer duplicate cancelled): their live children waited on it and follow.
    retries: automatic retries of failed nodes (cruijff.run.retry), without --retry-failed."""
    scope = selected | ancestors(plan, selected)
    out: dict[str, Decision] = {}
    for node in plan.nodes:
        if node.id not in scope:
            continue
        o = obs[node.id]
        submitting_parent = next((p for p in node.parents if out[p].action == SUBMIT), None)
        stuck = next((p for p in node.parents if out[p].action in (HELD, BLOCKED)), None)
        replaced = next((p for p in node.parents if p in rewired), None)
        if force and node.id in selected and stuck is None:
            out[node.id] = Decision(SUBMIT, "forced")
        elif o.state == COMPLETED and not o.outdated:
            out[node.id] = Decision(KEEP, "done")
        elif stuck is not None:
            root = out[stuck].blocker or stuck
            out[node.id] = Decision(BLOCKED, f"blocked by {root}", blocker=root)
        elif o.state in (NOT_SUBMITTED, INTERRUPTED):
            out[node.id] = Decision(SUBMIT, "not submitted" if o.state == NOT_SUBMITTED else "interrupted")
        elif o.outdated:
            out[node.id] = Decision(SUBMIT, "changed")
        elif submitting_parent is not None:
            out[node.id] = Decision(SUBMIT, f"parent {submitting_parent} is resubmitted")
        elif o.orphan_pid:
            out[node.id] = Decision(SUBMIT, "left running by an apply that died")
        elif replaced is not None and o.state in (*LIVE, CANCELLED):  # SLURM cancels it with its parent
            out[node.id] = Decision(SUBMIT, f"its parent {replaced}'s duplicate job was cancelled")
        elif o.state in LIVE:
            out[node.id] = Decision(KEEP, o.state)
        elif o.state == FAILED and node.id in retries and retries[node.id].automatic:
            out[node.id] = Decision(SUBMIT, retries[node.id].retried)
        elif retry_failed:
            out[node.id] = Decision(SUBMIT, f"{o.state}, retried")
        else:
            out[node.id] = Decision(HELD, held_reason(o.state, retries.get(node.id)))
    # Ancestors come along only where a selected node needs them.
    needed = {i for i in selected if out[i].action == SUBMIT}
    needed |= {a for a in ancestors(plan, needed) if out[a].action == SUBMIT}
    for node_id, d in list(out.items()):
        if node_id not in selected and (d.action != SUBMIT or node_id not in needed):
            del out[node_id]
    return out



def load_or_compile(target: str | Path, sets: tuple[str, ...] | list[str] = ()) -> Path:
    """A plan directory as is; a manifest is compiled first (by the compiler, imported lazily),
    with its `--set` overrides."""
    path = Path(target)
    if path.is_dir():
        if sets:
            raise UsageError("--set overrides a manifest, but this is a plan directory",
                             hint="plan it again: cruijff plan MANIFEST --set ... (or cruijff apply MANIFEST --set ...)")
        return path
    if path.is_file():
        from cruijff.compiler.pipeline import compile_to_dir  # the compiler is only needed for manifests

        return compile_to_dir(path, out=None, overrides=sets)
    raise UsageError(f"{target}: no such plan directory or manifest",
                     hint="pass the directory `cruijff plan` wrote, or a manifest file")


def apply(
    plan_dir: str | Path | Plan,  # a Plan: one its caller loaded already (5,000 nodes: 50 ms)
    executor: Executor,
    *,
    only: str | None = None,
    retry_failed: bool = False,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    store=None,
) -> ApplyResult:
    """store: the results store or None (cruijff/run/reuse.py: publish, materialise instead of submit)."""
    plan = plan_dir if isinstance(plan_dir, Plan) else load_plan(plan_dir)
    progress = progress or NoProgress()
    if force and only is None:
        raise UsageError("--force needs --only: it re-runs a selection on purpose",
                         hint="e.g. cruijff apply DIR --force --only 'run:lr_1e-4+' (a trailing + adds descendants)")
    selected = select(plan, only)
    if dry_run:
        with State(plan.output_dir, create=False) as state:
            view = plan_view(plan, state, executor)
        obs = view.obs
        retries = automatic_retries(plan, obs)
        result = ApplyResult(plan.output_dir, executor.name, True, {}, reused=preview(plan, obs, selected, force, store))
        result.decisions = decide(plan, obs, selected, retry_failed, force=force, retries=retries)
        result.removed, result.duplicates = view.removed, view.duplicates
        to_submit = result.ids(SUBMIT)
        result.sbatch_calls = len(_layout(plan, to_submit, _live_parents(obs, to_submit), executor))
        return result
    with apply_lock(plan.output_dir), State(plan.output_dir) as state:
        result = ApplyResult(plan.output_dir, executor.name, False, {})
        result.waited_s = _settle(plan, state, executor, progress)
        view = plan_view(plan, state, executor)
        obs = view.obs
        result.adopted = adopt(plan, state, obs, executor)
        rewired = drop_duplicates(plan, state, view.duplicates, executor)
        result.duplicates = list(view.duplicates)
        cancel_removed(state, view.removed, executor)
        result.removed = view.removed
        if rewired or result.duplicates:
            obs = plan_view(plan, state, executor).obs  # the kept jobs are now the nodes' jobs
        if store is not None and from_store(plan, state, obs, selected, force, store, result):
            obs = plan_view(plan, state, executor).obs  # reused nodes are done now
        retries = automatic_retries(plan, obs)
        result.decisions = decide(plan, obs, selected, retry_failed, force=force, rewired=rewired, retries=retries)
        prepare_retries(plan, obs, retries, to_submit := result.ids(SUBMIT))
        result.ancestors_added = [i for i in to_submit if i not in selected]
        superseded = sum(1 for i in to_submit if obs[i].state in LIVE)
        if to_submit:  # a no-op re-apply asks no limits (scontrol, sacctmgr: 0.5 s)
            executor.check_room(len(to_submit) - superseded)  # before anything is cancelled or submitted
        _retire(state, obs, to_submit, executor, result)
        detach(plan.output_dir, to_submit)  # a rerun of a stored or reused node never writes into the store
        rows = _submit_all(plan, state, obs, to_submit, executor, progress, result)
        if executor.runs_jobs and rows:
            _run_local(state, rows, executor.wait, progress, result)
    return result


def _settle(plan: Plan, state: State, executor: Executor, progress: Progress) -> float:
    """Wait out the sbatch calls an interrupted apply may still have in flight (reconcile.py)."""
    told = False

    def announce(n: int, seconds: float) -> None:
        nonlocal told
        if not told:
            note = getattr(progress, "note", None)
            if note is not None:
                note(f"waiting for {n} sbatch call(s) of an interrupted apply to settle "
                     f"(at most {max(0.0, seconds):.0f} s more)")
            told = True

    return settle_intents(plan, state, executor, announce=announce)


def _retire(state: State, obs: dict[str, Observation], to_submit: list[str], executor: Executor,
            result: ApplyResult) -> None:
    """Cancel the live jobs of nodes about to be resubmitted: they are superseded."""
    stale = [obs[i] for i in to_submit if obs[i].state in LIVE and obs[i].job_id]
    stop_jobs(state, executor, [Stop(o.job_id, "superseded by a new submission", o.orphan_pid) for o in stale])
    result.replaced = [o.job_id for o in stale]


def _kill_after() -> int | None:
    value = os.environ.get(KILL_AFTER_ENV)
    return int(value) if value else None


def _layout(plan: Plan, to_submit: list[str], live: dict[str, str], executor: Executor) -> list[Batch]:
    """The batches to submit: job arrays where the executor has them (see cruijff/compiler/batching.py)."""
    limit = executor.array_limit()
    root = Path(plan.output_dir)

    def shape(node: Node) -> tuple[str, ...]:
        try:
            return header_shape((root / node.script).read_text())
        except OSError as e:
            raise UsageError(f"{root / node.script}: cannot read the job script ({e.strerror})",
                             hint="re-run `cruijff plan` to write the plan directory again") from None

    return make_batches(plan, to_submit, live, shape if limit else (lambda node: None),
                        max_array_size=limit, max_concurrent=plan.cluster.get("max_concurrent") or {})


def _live_parents(obs: dict[str, Observation], to_submit: list[str]) -> dict[str, str]:
    """Job ids of queued or running nodes that stay: children wait for them."""
    return {i: o.adopt or o.job_id for i, o in obs.items() if o.state in LIVE and i not in to_submit}


def _resolve(dep: Dep, job_of_batch: dict[int, str]) -> str:
    if isinstance(dep, Ref):
        base = job_of_batch[dep.batch]
        return base if dep.task is None else f"{base}_{dep.task}"
    return dep


def _submit_all(plan, state, obs, to_submit, executor, progress, result) -> dict[str, int]:
    """The submit loop, one batch (job or array) per sbatch. Returns job id -> state row."""
    if not to_submit:
        return {}
    layout = _layout(plan, to_submit, _live_parents(obs, to_submit), executor)
    job_of_batch: dict[int, str] = {}
    rows: dict[str, int] = {}
    kill_after = _kill_after()
    progress.start(f"submitting ({executor.name})", len(to_submit))

    def failed(what: str, e: SchedulerError) -> SchedulerError:
        return SchedulerError(
            f"submitting {what} failed after {len(result.submitted)} of {len(to_submit)} jobs were "
            f"submitted: {e.message}",
            hint="state.db is consistent: fix the cause and re-run `cruijff apply`; what was "
                 "submitted will not be submitted again",
        )

    try:
        for batch in layout:
            after_ok = [_resolve(d, job_of_batch) for d in batch.after_ok]
            if batch.is_array:
                spec = ArraySubmission(
                    name=batch.name, digest=batch.digest, script=str(write_array_script(plan, batch)),
                    tasks=batch.tasks, after_ok=tuple(after_ok), throttle=batch.throttle,
                    after_corr=_resolve(batch.after_corr, job_of_batch) if batch.after_corr is not None else None,
                )
                what = f"{batch.kind} array {batch.name}"
                batch_rows = state.record_array_intent([(n.id, n.hash) for n in batch.nodes], executor.name,
                                                       batch.name, batch.tasks)
            else:
                what = batch.nodes[0].id
                batch_rows = [state.record_intent(batch.nodes[0].id, batch.nodes[0].hash, executor.name)]
            try:
                if batch.is_array:
                    job_id = executor.submit_array(plan, spec)
                else:
                    job_id = executor.submit(plan, batch.nodes[0], after_ok)
            except SubmitRefused as e:  # nothing queued: "not submitted", resubmitted by the next apply
                state.record_refused(batch_rows, e.message, e.phantom)
                raise failed(what, e) from None
            except SchedulerError as e:
                state.record_submit_error(batch_rows, e.message)
                raise failed(what, e) from None
            result.sbatch_calls += 1
            if kill_after is not None and result.sbatch_calls >= kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: die between sbatch and commit
            if batch.is_array:
                state.record_array_jobs(batch_rows, job_id)
                job_ids = [f"{job_id}_{t}" for t in batch.tasks]
            else:
                state.record_job(batch_rows[0], job_id)
                job_ids = [job_id]
            job_of_batch[batch.index] = job_id
            for node, node_job, row in zip(batch.nodes, job_ids, batch_rows):
                rows[node_job] = row
                result.submitted.append((node.id, node_job))
            progress.advance(f"{what} → {job_id}", len(batch.nodes))
    finally:
        progress.stop()
    return rows


def _run_local(state: State, rows: dict[str, int], wait: Callable, progress: Progress, result: ApplyResult) -> None:
    """Run the queued local jobs, recording each start (its pid) and end in state.db."""
    node_of = {job_id: node_id for node_id, job_id in result.submitted}
    progress.start("running (local)", len(rows))

    def on_event(info: JobInfo, pid: int | None) -> None:
        row = rows[info.job_id]
        if info.state == RUNNING:
            state.record_pid(row, pid)
            return
        final = info.state
        reason = info.reason
        if info.state == CANCELLED and info.reason == "interrupted":
            final = INTERRUPTED
        elif info.reason and info.reason.startswith("DependencyNeverSatisfied"):
            reason = f"blocked by {info.reason.split(': ', 1)[-1]}"
        state.record_final(row, final, info.exit_code, reason)
        # status's word for a job cancelled because a parent failed: blocked (one vocabulary)
        shown = BLOCKED if reason and reason.startswith("blocked by") else final
        result.final[node_of[info.job_id]] = shown
        progress.advance(f"{node_of[info.job_id]}: {shown}")

    try:
        wait(on_event)
    finally:
        progress.stop()
