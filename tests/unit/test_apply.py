"""apply against a fake scheduler: exactly-once submission, reconciliation, retries, selection."""

from __future__ import annotations

import pytest

from cruijff.run.apply import HELD, SUBMIT, apply, cancel
from cruijff.errors import SchedulerError, StateError
from cruijff.run.state import State, apply_lock
from cruijff.run.status import collect
from tests.helpers_plans import Crash, FakeScheduler, make_plan

N = 3 * (1 + 2) + 1  # 3 runs × (finetune + 2 evals) + 1 base eval


def states(plan, fake):
    return {n.id: n.label for n in collect(plan.output_dir, fake).nodes}


def test_first_apply_submits_all_in_order_with_afterok_parents(tmp_path):
    plan = make_plan(tmp_path)
    fake = FakeScheduler()
    result = apply(plan.output_dir, fake)
    assert [n for n, _ in result.submitted] == [n.id for n in plan.nodes]
    assert fake.sbatch_calls == N and fake.jobs_calls == 1
    job = dict(result.submitted)
    assert fake.deps_of(job["eval/r1/epoch_0/t0"]) == [job["finetune/r1"]]
    assert fake.deps_of(job["finetune/r1"]) == []


# The same behaviour with job arrays off (one sbatch per node) and on (one per stage: the fine-tune
# array, the base eval alone as a plain job, one eval array per task).
SUBMISSIONS = {"plain": N, "arrays": 4}


@pytest.fixture(params=sorted(SUBMISSIONS))
def mode(request):
    return request.param


def scheduler(mode: str, **kw) -> FakeScheduler:
    return FakeScheduler(max_array_size=1001, **kw) if mode == "arrays" else FakeScheduler(**kw)


def test_reapply_submits_nothing_and_completed_parents_are_not_dependencies(tmp_path, mode):
    plan = make_plan(tmp_path)
    fake = scheduler(mode)
    apply(plan.output_dir, fake)
    assert apply(plan.output_dir, fake).submitted == []
    fake.run_all()
    fake.forget_finished()  # squeue without sacct: finished jobs vanish; record.jsonl remains
    assert apply(plan.output_dir, fake).submitted == []
    assert fake.sbatch_calls == SUBMISSIONS[mode]
    assert set(states(plan, fake).values()) == {"done"}


@pytest.mark.parametrize("k", [1, 4, N])
def test_crash_between_sbatch_and_commit_never_submits_twice(tmp_path, k):
    plan = make_plan(tmp_path)
    fake = FakeScheduler(crash_after=k)
    with pytest.raises(Crash):
        apply(plan.output_dir, fake)
    with State(plan.output_dir) as st:
        intents = [s for s in st.all() if s.job_id is None]
    assert len(intents) == 1  # the k-th: submitted, but its job id never committed
    result = apply(plan.output_dir, fake)
    assert [n for n, _ in result.adopted] == [intents[0].node_id]
    assert fake.sbatch_calls == N
    assert all(len(jobs) == 1 for jobs in fake.jobs_by_node().values())
    # the recovered job is a proper parent of what was submitted after it
    fake.run_all()
    assert set(states(plan, fake).values()) == {"done"}


def test_crash_then_job_finished_and_vanished_is_recovered_from_record(tmp_path, mode):
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0)
    fake = scheduler(mode, crash_after=1)
    with pytest.raises(Crash):
        apply(plan.output_dir, fake)
    fake.run_all()
    fake.forget_finished()
    result = apply(plan.output_dir, fake)
    assert result.adopted and result.adopted[0][0] == "finetune/r0"
    assert [n for n, _ in result.submitted] == ["eval/r0/epoch_0/t0"]
    assert fake.sbatch_calls == 2


def test_failed_finetune_blocks_its_evals_and_retry_resubmits_only_that_subtree(tmp_path, mode):
    plan = make_plan(tmp_path, fail={"finetune/r1"})
    fake = scheduler(mode, fail={"finetune/r1"})
    apply(plan.output_dir, fake)
    fake.run_all()
    shown = states(plan, fake)
    assert shown["finetune/r1"] == "failed"
    assert shown["eval/r1/epoch_0/t0"] == shown["eval/r1/epoch_0/t1"] == "blocked-by-finetune/r1"
    assert {k: v for k, v in shown.items() if "r1" not in k} == {k: "done" for k in shown if "r1" not in k}
    again = apply(plan.output_dir, fake)
    assert again.submitted == [] and again.ids(HELD) == ["finetune/r1"]
    fake.fail.clear()
    retry = apply(plan.output_dir, fake, retry_failed=True)
    assert sorted(n for n, _ in retry.submitted) == ["eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1", "finetune/r1"]
    fake.run_all()
    assert set(states(plan, fake).values()) == {"done"}


def test_changed_node_resubmits_it_and_descendants_and_cancels_superseded_live_jobs(tmp_path, mode):
    plan = make_plan(tmp_path)
    fake = scheduler(mode)
    first = dict(apply(plan.output_dir, fake).submitted)
    fake.run_all()
    make_plan(tmp_path, changed={"finetune/r0", "base_eval/tiny/t0"})  # a manifest edit
    result = apply(plan.output_dir, fake)
    assert sorted(n for n, _ in result.submitted) == sorted(
        ["finetune/r0", "eval/r0/epoch_0/t0", "eval/r0/epoch_0/t1", "base_eval/tiny/t0"])
    assert result.replaced == []  # the old ones had finished
    # change again while the new ones are pending: the superseded pending jobs are cancelled
    make_plan(tmp_path, changed={"finetune/r0"}, version="v2")
    result2 = apply(plan.output_dir, fake)
    assert "finetune/r0" in dict(result2.submitted)
    assert dict(result.submitted)["finetune/r0"] in result2.replaced
    assert first["finetune/r0"] not in result2.replaced


def test_only_submits_selection_plus_needed_ancestors(tmp_path, mode):
    plan = make_plan(tmp_path)
    fake = scheduler(mode)
    result = apply(plan.output_dir, fake, only="eval/r2/epoch_0/t1")
    assert [n for n, _ in result.submitted] == ["finetune/r2", "eval/r2/epoch_0/t1"]
    assert result.ancestors_added == ["finetune/r2"]
    result = apply(plan.output_dir, fake, only="run:r2+")
    assert [n for n, _ in result.submitted] == ["eval/r2/epoch_0/t0"]
    shown = states(plan, fake)
    assert shown["finetune/r0"] == "not submitted"


def test_permanent_sbatch_error_stops_with_consistent_state(tmp_path):
    plan = make_plan(tmp_path)
    fake = FakeScheduler(reject={"finetune/r1"})
    with pytest.raises(SchedulerError, match="finetune/r1.*after 3 of 10.*Invalid account"):
        apply(plan.output_dir, fake)
    assert fake.live_count() == 3
    fake.reject.clear()
    result = apply(plan.output_dir, fake)
    assert [n for n, _ in result.submitted][0] == "finetune/r1"
    assert fake.live_count() == N
    assert all(len(j) == 1 for j in fake.jobs_by_node().values())


def test_second_apply_is_refused_while_one_holds_the_lock(tmp_path):
    plan = make_plan(tmp_path)
    with apply_lock(plan.output_dir):
        with pytest.raises(StateError, match="another `cruijff apply`"):
            apply(plan.output_dir, FakeScheduler())


def test_dry_run_changes_nothing(tmp_path, mode):
    plan = make_plan(tmp_path)
    fake = scheduler(mode)
    result = apply(plan.output_dir, fake, dry_run=True)
    assert len(result.ids(SUBMIT)) == N and fake.sbatch_calls == 0
    assert not (tmp_path / "exp" / "state.db").exists()


def test_jobs_found_in_the_scheduler_without_state_are_adopted(tmp_path, mode):
    plan = make_plan(tmp_path)
    fake = scheduler(mode)
    apply(plan.output_dir, fake)
    (tmp_path / "exp" / "state.db").unlink()
    result = apply(plan.output_dir, fake)
    assert result.submitted == [] and len(result.adopted) == N
    assert all(len(jobs) == 1 for jobs in fake.jobs_by_node().values())


def test_cancel_selected_then_status_and_retry(tmp_path, mode):
    plan = make_plan(tmp_path)
    fake = scheduler(mode)
    apply(plan.output_dir, fake)
    out = cancel(plan.output_dir, fake, only="run:r0")
    assert len(out["cancelled"]) == 3
    fake.run_all()
    fake.forget_finished()
    shown = states(plan, fake)
    assert shown["finetune/r0"] == "cancelled"
    assert shown["eval/r0/epoch_0/t0"] == "blocked-by-finetune/r0"
    assert shown["finetune/r1"] == "done"
    assert apply(plan.output_dir, fake).submitted == []
    assert len(apply(plan.output_dir, fake, retry_failed=True).submitted) == 3
