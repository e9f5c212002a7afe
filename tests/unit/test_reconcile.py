"""Settling in-flight submissions, duplicates, removed nodes' jobs, refusals and --force (pure parts
and apply against the fake scheduler; the real-SLURM proofs are in test_exactly_once_slurm.py)."""

from __future__ import annotations

import fcntl
import subprocess
import sys

import pytest

from cruijff.run.apply import SUBMIT, apply, decide
from cruijff.run.observe import name_array_tasks, plan_view
from cruijff.errors import SchedulerError, UsageError
from cruijff.run.executors.base import PENDING, RUNNING, JobInfo, Outcome, SubmitRefused
from cruijff.run.executors.slurm import SlurmExecutor, journal_path, journal_runner
from cruijff.run.observe import NOT_SUBMITTED
from cruijff.run.reconcile import duplicates, removed_jobs, settle_intents
from cruijff.run.arrays import array_root
from cruijff.run.state import REFUSED, State
from tests.helpers_plans import FakeScheduler, make_plan


# --- settle_intents --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class InFlight(FakeScheduler):
    """A fake whose interrupted sbatch is still running for `running_s`, then lands its job."""

    def __init__(self, clock: Clock, running_s: float, outcome: str = "job"):
        super().__init__()
        self.t = clock
        self.until = clock.now + running_s
        self.bound = clock.now + 150  # apply gives up on a running sbatch after this
        self.outcome = outcome
        self.asked = 0

    def submission_outcome(self, plan, name, comment, since):
        self.asked += 1
        if self.t.now < self.until:
            return Outcome(running=True, wait_until=self.bound)
        if self.outcome == "job":
            return Outcome(job_id="4242")
        if self.outcome == "refused":
            return Outcome(refused="sbatch refused finetune/r0: Invalid account")
        return Outcome(wait_until=self.until + 20)  # timed out: may land for 20 s more


def intent(plan, node_id="finetune/r0"):
    with State(plan.output_dir) as state:
        return state.record_intent(node_id, plan.node(node_id).hash, "slurm")


def test_an_intent_whose_sbatch_still_runs_is_waited_for_then_recorded(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    row = intent(plan)
    clock = Clock()
    fake = InFlight(clock, running_s=3)
    with State(plan.output_dir) as state:
        waited = settle_intents(plan, state, fake, clock=clock, sleep=clock.sleep)
        assert state.current()["finetune/r0"].job_id == "4242"
        assert state.current()["finetune/r0"].id == row
    assert 3 <= waited <= 3.5
    assert fake.sbatch_calls == 0


def test_a_refused_in_flight_sbatch_reads_not_submitted(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    intent(plan)
    clock = Clock()
    fake = InFlight(clock, running_s=0, outcome="refused")
    with State(plan.output_dir) as state:
        settle_intents(plan, state, fake, clock=clock, sleep=clock.sleep)
        assert state.current()["finetune/r0"].final_state == REFUSED
        assert plan_view(plan, state, fake).obs["finetune/r0"].state == NOT_SUBMITTED


def test_a_timed_out_sbatch_is_waited_out_for_the_settle_window_unless_its_job_appears(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    intent(plan)
    clock = Clock()
    fake = InFlight(clock, running_s=0, outcome="timeout")
    with State(plan.output_dir) as state:
        assert settle_intents(plan, state, fake, clock=clock, sleep=clock.sleep) == pytest.approx(20, abs=0.6)
    # now the job lands while we wait: no more waiting than until it is seen
    plan2 = make_plan(tmp_path / "b", runs=1, evals_per_run=0, base_evals=0)
    intent(plan2)
    fake2 = InFlight(clock, running_s=0, outcome="timeout")
    fake2.submit(plan2, plan2.node("finetune/r0"), [])  # the job that landed (same name and hash)
    with State(plan2.output_dir) as state:
        assert settle_intents(plan2, state, fake2, clock=clock, sleep=clock.sleep) == 0


def test_an_sbatch_running_on_too_long_stops_apply_clearly(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    intent(plan)
    clock = Clock()
    fake = InFlight(clock, running_s=10_000)
    with State(plan.output_dir) as state, pytest.raises(SchedulerError, match="still running"):
        settle_intents(plan, state, fake, clock=clock, sleep=clock.sleep)


# --- the sbatch journal (SlurmExecutor.submission_outcome) -----------------------------------


def outcome(tmp_path, text: str | None, *, locked=False, since=None):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0, executor="slurm")
    ex = SlurmExecutor(lambda argv, env=None: subprocess.CompletedProcess(argv, 1, "", "down"), settle_s=20)
    path = journal_path(plan.output_dir, "finetune/r0", "h")
    if text is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    holder = None
    if locked:
        holder = open(path)
        fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        mtime = path.stat().st_mtime if path.exists() else 0
        return ex.submission_outcome(plan, "finetune/r0", "h", mtime if since is None else since), mtime
    finally:
        if holder:
            holder.close()


def test_journal_outcomes(tmp_path):
    assert outcome(tmp_path / "a", None)[0] == Outcome()  # apply died before sbatch started
    assert outcome(tmp_path / "b", "4242\n")[0] == Outcome(job_id="4242")
    running, _ = outcome(tmp_path / "c", "", locked=True)
    assert running.running and running.wait_until
    refused, _ = outcome(tmp_path / "d", "sbatch: error: Batch job submission failed: Invalid account\n")
    assert "Invalid account" in refused.refused
    timed_out, mtime = outcome(tmp_path / "e", "sbatch: error: Socket timed out on send/recv operation\n")
    assert timed_out == Outcome(wait_until=mtime + 20)
    killed, mtime = outcome(tmp_path / "f", "")  # sbatch killed without a word: unknown too
    assert killed == Outcome(wait_until=mtime + 20)
    never_reached, _ = outcome(tmp_path / "g", "sbatch: error: Unable to contact slurm controller (connect failure)\n")
    assert never_reached == Outcome()
    stale, mtime = outcome(tmp_path / "h", "17\n", since=10**10)  # an earlier submission's journal
    assert stale == Outcome()


def test_the_journal_lock_outlives_the_apply_that_started_sbatch(tmp_path):
    """The lock is the open file's, which the sbatch process inherits: killing its parent keeps it."""
    journal = tmp_path / "j.out"
    from tests.conftest import REPO

    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from pathlib import Path; "
            "from cruijff.run.executors.slurm import journal_runner; "
            f"journal_runner(['bash', '-c', 'sleep 1.5; echo 77'], Path({str(journal)!r}))")
    parent = subprocess.Popen([sys.executable, "-c", code])
    import time

    deadline = time.time() + 20
    while not journal.exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    parent.kill()
    parent.wait()
    from cruijff.run.executors.slurm import _journal_locked

    assert _journal_locked(journal)  # the orphaned "sbatch" still runs and holds it
    while _journal_locked(journal) and time.time() < deadline:
        time.sleep(0.05)
    assert journal.read_text().strip() == "77"


def test_journal_runner_returns_what_sbatch_printed(tmp_path):
    proc = journal_runner(["bash", "-c", "echo 12; echo 'sbatch: warning: x' >&2"], tmp_path / "x" / "j.out")
    assert proc.returncode == 0 and "12" in proc.stdout.split()


# --- refusals through apply ------------------------------------------------------------------


class Refusing(FakeScheduler):
    def submit(self, plan, node, parent_job_ids):
        if node.id in self.reject:
            self.sbatch_calls += 1
            raise SubmitRefused("sbatch refused it: Memory specification can not be satisfied", phantom="999")
        return super().submit(plan, node, parent_job_ids)


def test_a_refused_node_is_not_submitted_not_failed_and_a_plain_reapply_submits_it(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0)
    fake = Refusing(reject={"eval/r0/epoch_0/t0"})
    with pytest.raises(SchedulerError, match="Memory specification"):
        apply(plan.output_dir, fake)
    fake._jobs["999"] = dict(node="eval/r0/epoch_0/t0", hash=plan.node("eval/r0/epoch_0/t0").hash, deps=[],
                             state="failed", reason=None, exit=1, start=None, end=None, out=plan.output_dir,
                             experiment=plan.experiment)  # SLURM's record of the refused job
    with State(plan.output_dir) as state:
        view = plan_view(plan, state, fake)
    assert view.obs["eval/r0/epoch_0/t0"].state == NOT_SUBMITTED
    assert "Memory" in view.obs["eval/r0/epoch_0/t0"].reason
    fake.reject.clear()
    again = apply(plan.output_dir, fake)
    assert [n for n, _ in again.submitted] == ["eval/r0/epoch_0/t0"]


# --- duplicates and removed nodes (pure) -----------------------------------------------------


def info(job_id, node, state=PENDING, node_hash=None):
    return JobInfo(job_id=job_id, node_id=node, state=state, node_hash=node_hash)


def test_duplicates_keep_the_oldest_live_job_of_a_node():
    plan = make_plan("/tmp/unused-dups", runs=1, evals_per_run=1, base_evals=0)
    h = plan.node("finetune/r0").hash
    jobs = {"12": info("12", "finetune/r0", RUNNING, h), "9": info("9", "finetune/r0", PENDING, h),
            "30": info("30", "finetune/r0", "cancelled", h), "7_0": info("7_0", "array/eval/abc")}
    (dup,) = duplicates(plan, jobs, [])
    assert (dup.node_id, dup.keep, dup.extra) == ("finetune/r0", "9", ("12",))


def test_removed_jobs_come_from_state_rows_of_nodes_not_in_the_plan(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    with State(plan.output_dir) as state:
        state.record_adopted("finetune/r9", "h9", "slurm", "55")
        state.record_adopted("finetune/r8", "h8", "slurm", "56")
        rows = state.all()
    jobs = {"55": info("55", "finetune/r9", RUNNING), "56": info("56", "finetune/r8", "cancelled"),
            "60_3": info("60_3", "eval/r7/epoch_0/t0"), "61": info("61", "finetune/other-plan")}
    got = [(r.node_id, r.job_id) for r in removed_jobs(plan, jobs, rows)]
    assert got == [("eval/r7/epoch_0/t0", "60_3"), ("finetune/r9", "55")]  # a plain unknown job: not ours to say


def test_apply_cancels_jobs_of_nodes_that_left_the_plan(tmp_path):
    fake = FakeScheduler()
    apply(make_plan(tmp_path, runs=3, evals_per_run=1, base_evals=0).output_dir, fake)
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0)
    result = apply(plan.output_dir, fake)
    assert sorted(r.node_id for r in result.removed) == ["eval/r2/epoch_0/t0", "finetune/r2"]
    assert result.submitted == [] and fake.live_count() == 4
    assert apply(plan.output_dir, fake).removed == []


# --- --force and rewired parents (decide) ----------------------------------------------------


def test_force_resubmits_the_selection_whatever_its_state(tmp_path):
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0)
    fake = FakeScheduler()
    apply(plan.output_dir, fake)
    fake.run_all()
    with pytest.raises(UsageError, match="--only"):
        apply(plan.output_dir, fake, force=True)
    result = apply(plan.output_dir, fake, force=True, only="finetune/r1")
    assert [n for n, _ in result.submitted] == ["finetune/r1"]
    assert apply(plan.output_dir, fake).submitted == []


def test_force_cancels_the_live_job_first(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    fake = FakeScheduler()
    first = dict(apply(plan.output_dir, fake).submitted)
    result = apply(plan.output_dir, fake, force=True, only="finetune/r0")
    assert result.replaced == [first["finetune/r0"]] and fake.cancelled == [first["finetune/r0"]]
    assert fake.live_count() == 1


def test_children_of_a_rewired_node_follow_it(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0)
    fake = FakeScheduler()
    apply(plan.output_dir, fake)
    with State(plan.output_dir) as state:
        obs = plan_view(plan, state, fake).obs
    selected = {n.id for n in plan.nodes}
    assert decide(plan, obs, selected, False) and all(
        d.action != SUBMIT for d in decide(plan, obs, selected, False).values())
    d = decide(plan, obs, selected, False, rewired={"finetune/r0"})
    assert d["eval/r0/epoch_0/t0"].action == SUBMIT and "duplicate" in d["eval/r0/epoch_0/t0"].reason


# --- arrays named from the scheduler's batch script -------------------------------------------


class Scripts(FakeScheduler):
    def __init__(self, script):
        super().__init__()
        self.script = script

    def batch_script(self, job_id):
        return self.script


def test_array_tasks_are_named_from_the_batch_script_slurm_holds(tmp_path):
    from cruijff.run.arrays import array_script

    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    node = plan.node("finetune/r0")
    text = array_script(title="t", root=plan.output_dir, header=(), log="x.out", members=[(0, node.dir, node.hash)])
    assert array_root(text) == plan.output_dir
    jobs = {"5_0": info("5_0", "array/finetune/abc")}
    named = name_array_tasks(plan, jobs, set(), Scripts(text))
    assert (named["5_0"].node_id, named["5_0"].node_hash) == ("finetune/r0", node.hash)
    other = text.replace(f"root={plan.output_dir}", "root=/elsewhere")  # another plan, same experiment
    assert name_array_tasks(plan, jobs, set(), Scripts(other))["5_0"].node_id == "array/finetune/abc"


def test_an_older_duplicate_is_kept_and_children_of_the_cancelled_one_follow_it(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0)
    fake = FakeScheduler()
    first = dict(apply(plan.output_dir, fake).submitted)
    ft = plan.node("finetune/r0")
    fake._jobs["900"] = dict(node=ft.id, hash=ft.hash, deps=[], state="pending", reason=None, exit=None,
                             start=None, end=None, out=plan.output_dir, experiment=plan.experiment)
    assert [(d.keep, d.extra) for d in collect_dups(plan, fake)] == [("900", (first[ft.id],))]
    result = apply(plan.output_dir, fake)
    assert [(d.keep, d.extra) for d in result.duplicates] == [("900", (first[ft.id],))]
    assert [n for n, _ in result.submitted] == ["eval/r0/epoch_0/t0"]  # it waited on the cancelled job
    assert fake.deps_of(dict(result.submitted)["eval/r0/epoch_0/t0"]) == ["900"]
    assert fake.cancelled == [first[ft.id]]  # its child was cancelled with it (kill-on-invalid-dep)
    assert fake.live_count() == 2
    assert apply(plan.output_dir, fake).submitted == []


def collect_dups(plan, fake):
    from cruijff.run.status import collect

    return collect(plan.output_dir, fake).duplicates


def test_cancel_waits_for_an_sbatch_in_flight_and_cancels_its_job(tmp_path, monkeypatch):
    """Else the job of an interrupted apply's sbatch would land after the cancel."""
    from cruijff.run import reconcile
    from cruijff.run.apply import cancel

    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0)
    intent(plan)
    clock = Clock()
    fake = InFlight(clock, running_s=2)
    landed = {}

    def outcome(plan_, name, comment, since):
        out = InFlight.submission_outcome(fake, plan_, name, comment, since)
        if out.job_id and not landed:
            landed["id"] = fake.submit(plan, plan.node(name), [])  # the job the sbatch created
        return Outcome(job_id=landed["id"]) if out.job_id else out

    fake.submission_outcome = outcome
    monkeypatch.setattr(reconcile.time, "sleep", clock.sleep)
    monkeypatch.setattr(reconcile.time, "time", clock)
    out = cancel(plan.output_dir, fake)
    assert [c["job_id"] for c in out["cancelled"]] == [landed["id"]]
    assert fake.live_count() == 0
