"""Job arrays against the real single-node SLURM: few sbatch calls, aftercorr, splits, retries.

Trivial job bodies (tests/helpers_plans.py): each node's script records its start and end, so
timestamps show what waited for what. Each test has its own experiment name.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections import Counter

import pytest

from cruijff.run.apply import apply, cancel
from cruijff.run.executors.slurm import SlurmExecutor, cluster_limits, default_runner
from cruijff.run.status import collect
from tests.helpers_plans import make_plan, starts, trace
from tests.integration.conftest import CLUSTER_SCRIPT
from tests.integration.test_apply_slurm import scheduler_jobs, wait_settled

pytestmark = pytest.mark.slurm


@pytest.fixture
def experiment(slurm_cluster) -> str:
    return f"a{uuid.uuid4().hex[:8]}"


class Counting:
    """A runner that counts the SLURM commands cruijff runs."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def __call__(self, argv, env=None):
        self.calls[argv[0]] += 1
        return default_runner(argv, env)


def test_sbatch_calls_do_not_grow_with_the_number_of_runs(tmp_path, experiment):
    calls = {}
    for runs in (50, 1000):
        plan = make_plan(tmp_path / str(runs), runs=runs, evals_per_run=4, base_evals=0, sleep=300,
                         experiment=f"{experiment}-{runs}", executor="slurm")
        runner = Counting()
        ex = SlurmExecutor(runner)
        try:
            result = apply(plan.output_dir, ex)
            assert len(result.submitted) == runs * 5
            calls[runs] = runner.calls["sbatch"]
            assert len(scheduler_jobs(plan.experiment)) == runs * 5  # one array task per node
            runner.calls.clear()
            report = collect(plan.output_dir, ex)
            assert runner.calls == {"squeue": 1, "sacct": 1}
            assert sum(report.counts().get(s, 0) for s in ("pending", "running")) == runs * 5
        finally:
            cancel(plan.output_dir, ex)
    assert calls[50] == calls[1000] == 5  # one fine-tune array, one array per evaluation task


def test_eval_i_starts_when_finetune_i_is_done_not_all_of_them(tmp_path, experiment):
    """aftercorr: with fine-tunes throttled to one at a time (%1), evaluation 0 runs while
    fine-tune 1 still runs, long before the last fine-tune ends."""
    plan = make_plan(tmp_path, runs=4, evals_per_run=1, base_evals=0, sleep=2, experiment=experiment,
                     executor="slurm", sleeps={f"eval/r{i}/epoch_0/t0": 0.2 for i in range(4)},
                     cluster={"max_concurrent": {"finetune": 1}})
    ex = SlurmExecutor()
    apply(plan.output_dir, ex)
    assert set(wait_settled(plan, ex, timeout=120).values()) == {"done"}
    at = {(n, e): t for n, e, t in trace(plan)}
    for i in range(4):
        assert at[(f"finetune/r{i}", "end")] <= at[(f"eval/r{i}/epoch_0/t0", "start")]
    assert at[("eval/r0/epoch_0/t0", "start")] < at[("finetune/r1", "end")]
    assert at[("eval/r0/epoch_0/t0", "start")] < at[("finetune/r3", "end")]
    runs = sorted((at[(f"finetune/r{i}", "start")], at[(f"finetune/r{i}", "end")]) for i in range(4))
    assert all(end <= next_start for (_, end), (next_start, _) in zip(runs, runs[1:]))  # %1 held


@pytest.fixture
def small_max_array_size(slurm_cluster):
    """The cluster restarted with MaxArraySize=3 (task ids 0-2), then put back as it was."""
    before = cluster_limits()

    def restart(size: int, jobs: int) -> None:
        env = {**os.environ, "CRUIJFF_SLURM_MAX_ARRAY_SIZE": str(size), "CRUIJFF_SLURM_MAX_JOB_COUNT": str(jobs)}
        proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    restart(3, before["MaxJobCount"])
    try:
        assert cluster_limits()["MaxArraySize"] == 3
        yield
    finally:
        restart(before["MaxArraySize"], before["MaxJobCount"])


def test_max_array_size_smaller_than_a_stage_splits_it(tmp_path, experiment, small_max_array_size):
    plan = make_plan(tmp_path, runs=7, evals_per_run=1, base_evals=0, sleep=0.2, experiment=experiment,
                     executor="slurm")
    runner = Counting()
    ex = SlurmExecutor(runner)
    result = apply(plan.output_dir, ex)
    # fine-tunes: arrays of 3, 3 and a plain job; each evaluation follows its fine-tune's array
    assert runner.calls["sbatch"] == 6
    assert {j.split("_")[1] for _, j in result.submitted if "_" in j} == {"0", "1", "2"}
    assert set(wait_settled(plan, ex, timeout=120).values()) == {"done"}
    assert all(c == 1 for c in starts(plan).values())


def test_a_failed_array_task_is_retried_alone(tmp_path, experiment):
    plan = make_plan(tmp_path, runs=3, evals_per_run=2, base_evals=0, sleep=0.2, experiment=experiment,
                     executor="slurm", fail={"finetune/r1"})
    ex = SlurmExecutor()
    apply(plan.output_dir, ex)
    shown = wait_settled(plan, ex, timeout=120)
    assert shown["finetune/r1"] == "failed"
    assert shown["eval/r1/epoch_0/t0"] == shown["eval/r1/epoch_0/t1"] == "blocked-by-finetune/r1"
    assert {n for n, s in shown.items() if s == "done"} == {
        "finetune/r0", "finetune/r2", *(f"eval/r{i}/epoch_0/t{t}" for i in (0, 2) for t in (0, 1))}

    make_plan(tmp_path, runs=3, evals_per_run=2, base_evals=0, sleep=0.2, experiment=experiment,
              executor="slurm")  # the same plan, its fine-tune fixed (say, a bad node drained)
    again = apply(plan.output_dir, ex, retry_failed=True)
    assert [n for n, _ in again.submitted] == ["finetune/r1", "eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1"]
    assert "_" not in dict(again.submitted)["finetune/r1"]  # a plain job, not the whole array again
    assert set(wait_settled(plan, ex, timeout=120).values()) == {"done"}
    assert starts(plan)["finetune/r1"] == 2
    assert all(c == 1 for n, c in starts(plan).items() if n != "finetune/r1")


def test_cancel_and_status_with_arrays(tmp_path, experiment):
    plan = make_plan(tmp_path, runs=3, evals_per_run=1, base_evals=0, sleep=120, experiment=experiment,
                     executor="slurm")
    ex = SlurmExecutor()
    apply(plan.output_dir, ex)
    report = collect(plan.output_dir, ex)
    assert all("_" in n.job_id for n in report.nodes)
    out = cancel(plan.output_dir, ex, only="kind:finetune")
    assert len(out["cancelled"]) == 3
    shown = wait_settled(plan, ex, timeout=60)
    for i in range(3):
        assert shown[f"finetune/r{i}"] == "cancelled"
        assert shown[f"eval/r{i}/epoch_0/t0"] == f"blocked-by-finetune/r{i}"


@pytest.fixture
def max_submit_jobs(slurm_cluster):
    """The user's association limited to 10 queued jobs (sacctmgr), then unlimited again."""
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name

    def limit(value: str) -> None:
        proc = subprocess.run(["sacctmgr", "-i", "modify", "user", user, "set", f"MaxSubmitJobs={value}"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    limit("10")
    try:
        yield 10
    finally:
        limit("-1")


def test_an_experiment_over_the_users_job_limit_is_refused_whole(tmp_path, experiment, max_submit_jobs):
    from cruijff.errors import SchedulerError
    from cruijff.run.state import State
    from tests.integration.test_apply_slurm import cli

    planned = cli("plan", "experiments/twins.yaml", "--out", str(tmp_path / "twins"), "--json",
                  env={"SCRATCH": str(tmp_path)})
    assert planned.returncode == 0, planned.stderr
    data = json.loads(planned.stdout)
    assert data["slurm"]["limits"]["submit_limit"] == 10
    assert any("at most 10" in w["message"] and "MaxSubmitJobs" in w["message"] for w in data["warnings"])

    plan = make_plan(tmp_path, runs=3, evals_per_run=3, base_evals=0, experiment=experiment, executor="slurm")
    with pytest.raises(SchedulerError, match="at most 10 queued"):
        apply(plan.output_dir, SlurmExecutor())
    assert scheduler_jobs(experiment) == {}
    with State(plan.output_dir) as state:
        assert all(s.job_id is None for s in state.all())
