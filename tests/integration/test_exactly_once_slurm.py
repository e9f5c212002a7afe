"""Exactly once against the real local SLURM when sbatch is slow, lies or refuses, when apply is
SIGKILLed mid-sbatch, when the plan directory is wiped, and when runs leave the plan
(issues 13.1, 13.2, 17.2, 17.3, 17.6, 12.4). Jobs are counted in squeue + sacct, per node.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from cruijff.run.apply import apply
from cruijff.run.executors.slurm import SlurmExecutor
from cruijff.run.status import collect
from tests.helpers_faults import (
    KillStats,
    cancel_experiment,
    cruijff,
    env_with,
    eventually,
    kill_round,
    landed,
    late_sbatch,
    node_jobs,
    scheduler_records,
    slow_sbatch,
)
from tests.helpers_plans import make_plan

pytestmark = pytest.mark.slurm


@pytest.fixture
def experiment(slurm_cluster):
    name = f"x{uuid.uuid4().hex[:8]}"
    yield name
    cancel_experiment(name)


@pytest.mark.slow  # 22+ random kills; the default tier keeps the single-kill cases below
def test_random_sigkills_with_a_slow_sbatch_leave_exactly_one_job_per_node(tmp_path, experiment):
    """Issue 13.1: apply killed at random moments (often while an sbatch is still running), the
    next apply started at once: every node has exactly one job in squeue + sacct; at least 22 kills."""
    rng = random.Random(13)
    stats = KillStats()
    bin_dir = slow_sbatch(tmp_path / "bin", delay=0.6)
    round_ = 0
    while stats.kills < 22 and round_ < 30:  # a round whose apply finished first kills less
        round_ += 1
        plan = make_plan(tmp_path / str(round_), runs=2, evals_per_run=1, base_evals=1, sleep=600,
                         experiment=f"{experiment}-{round_}", executor="slurm",
                         cluster={"arrays": round_ % 2 == 1})
        try:
            jobs = kill_round(plan, bin_dir, rng, kills=4, window=4.0, stats=stats)
        finally:
            cancel_experiment(plan.experiment)
        assert {n: len(j) for n, j in jobs.items()} == {n.id: 1 for n in plan.nodes}, jobs
    print(f"kills={stats.kills} in_flight={stats.in_flight} duplicates={stats.duplicates} "
          f"waited={max(stats.waited_s):.1f}s")
    assert stats.kills >= 20
    assert stats.in_flight >= 5  # the case of the issue: killed while sbatch runs
    assert stats.duplicates == 0 and stats.missing == 0


def test_a_timed_out_sbatch_whose_job_lands_later_is_adopted_not_submitted_again(tmp_path, experiment):
    """Issue 17.3: every sbatch says "Socket timed out" and exits 1, and the job lands 2 s later."""
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=1, sleep=600, experiment=experiment,
                     executor="slurm")
    bin_dir = late_sbatch(tmp_path / "bin", delay=2)
    out = cruijff("apply", plan.output_dir, "--executor", "slurm", "--json", env=env_with(bin_dir))
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["submitted"]) == len(plan.nodes)
    eventually(lambda: landed(bin_dir))  # every late job has reached the queue
    assert {n: len(j) for n, j in node_jobs(plan).items()} == {n.id: 1 for n in plan.nodes}


def test_apply_killed_after_a_timed_out_sbatch_settles_it_on_the_next_apply(tmp_path, experiment):
    """Issue 17.3 with a crash: apply dies while it watches for the timed-out job; the next apply
    (real sbatch) finds the job that landed instead of submitting it again."""
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0, sleep=600, experiment=experiment,
                     executor="slurm")
    bin_dir = late_sbatch(tmp_path / "bin", delay=3)
    proc = subprocess.Popen([sys.executable, "-m", "cruijff", "apply", plan.output_dir, "--executor", "slurm"],
                            env=env_with(bin_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (bin_dir / "calls").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # sbatch has "timed out" and apply watches the queue; the job lands at 3 s
    proc.kill()
    proc.wait()
    again = cruijff("apply", plan.output_dir, "--executor", "slurm", "--json")
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["submitted"] == [] and len(data["adopted"]) == 1
    assert data["waited_s"] > 0.5
    assert {n: len(j) for n, j in node_jobs(plan).items()} == {"finetune/r0": 1}


def test_a_wiped_plan_directory_adopts_queued_arrays_from_the_scheduler(tmp_path, experiment):
    """Issue 17.2: `rm -rf DIR; plan; apply` (and: delete state.db and arrays/) while the arrays
    are queued submits nothing again: tasks are named from the batch script SLURM holds."""
    kwargs = dict(runs=3, evals_per_run=2, base_evals=1, sleep=600, experiment=experiment, executor="slurm")
    plan = make_plan(tmp_path, **kwargs)
    ex = SlurmExecutor()
    first = apply(plan.output_dir, ex)
    assert any("_" in j for _, j in first.submitted)  # job arrays
    jobs_before = node_jobs(plan)
    (tmp_path / experiment / "state.db").unlink()
    shutil.rmtree(tmp_path / experiment / "arrays")
    again = apply(plan.output_dir, SlurmExecutor())
    assert again.submitted == [] and len(again.adopted) == len(plan.nodes)
    shutil.rmtree(plan.output_dir)
    plan = make_plan(tmp_path, **kwargs)
    third = apply(plan.output_dir, SlurmExecutor())
    assert third.submitted == [] and len(third.adopted) == len(plan.nodes)
    # one job per node, the same ones as before (arrays/ is gone, so compared by job id)
    assert sorted(j for js in jobs_before.values() for j in js) == sorted(scheduler_records(experiment))
    assert all(len(j) == 1 for j in jobs_before.values())


def test_a_refused_sbatch_reads_not_submitted_and_a_plain_reapply_submits_it(tmp_path, experiment):
    """Issue 17.6: an evaluation asking for 999G is refused (SLURM keeps a FAILED record of it);
    status says "not submitted"; after the fix a plain apply submits it."""
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0, sleep=600, experiment=experiment,
                     executor="slurm")
    script = tmp_path / experiment / "eval/r1/epoch_0/t0/job.sbatch"
    good = script.read_text()
    script.write_text(good.replace("#SBATCH --cpus-per-task=1", "#SBATCH --cpus-per-task=1\n#SBATCH --mem=999G"))
    out = cruijff("apply", plan.output_dir, "--executor", "slurm")
    assert out.returncode == 1 and "refused" in out.stderr and "Traceback" not in out.stderr
    phantom = [j for j, (name, state) in scheduler_records(experiment).items()
               if name.endswith(":eval/r1/epoch_0/t0")]
    status = json.loads(cruijff("status", plan.output_dir, "--json").stdout)
    shown = {n["id"]: n for n in status["nodes"]}
    assert shown["eval/r1/epoch_0/t0"]["state"] == "not submitted"
    assert "refused" in shown["eval/r1/epoch_0/t0"]["reason"]
    script.write_text(good)  # the fix
    again = cruijff("apply", plan.output_dir, "--executor", "slurm", "--json")
    assert again.returncode == 0, again.stderr
    assert "eval/r1/epoch_0/t0" in [s["node"] for s in json.loads(again.stdout)["submitted"]]
    live = node_jobs(plan, live_only=True)
    assert {n: len(j) for n, j in live.items()} == {n.id: 1 for n in plan.nodes}
    all_jobs = node_jobs(plan)
    assert len(all_jobs["eval/r1/epoch_0/t0"]) == 1 + len(phantom)  # the refused record + the real job


def test_removed_runs_are_cancelled_by_apply_and_shown_until_gone(tmp_path, experiment):
    """Issue 13.2: runs removed from the grid while queued: status lists their jobs, apply cancels
    them (and says how many), cancel reaches those of a later edit."""
    plan = make_plan(tmp_path, runs=3, evals_per_run=1, base_evals=0, sleep=600, experiment=experiment,
                     executor="slurm")
    apply(plan.output_dir, SlurmExecutor())
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0, sleep=600, experiment=experiment,
                     executor="slurm")  # r2 left the grid
    status = json.loads(cruijff("status", plan.output_dir, "--json").stdout)
    assert sorted(r["node"] for r in status["removed_jobs"]) == ["eval/r2/epoch_0/t0", "finetune/r2"]
    text = cruijff("status", plan.output_dir).stdout
    assert "removed from the plan" in text
    out = cruijff("apply", plan.output_dir, "--executor", "slurm", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert sorted(r["node"] for r in data["removed_jobs"]) == ["eval/r2/epoch_0/t0", "finetune/r2"]
    assert data["submitted"] == []
    gone = {r["job_id"] for r in status["removed_jobs"]}
    deadline = time.time() + 30
    while time.time() < deadline:
        live = {j for j, (_, state) in scheduler_records(experiment).items() if state in ("PENDING", "RUNNING")}
        if not live & gone:
            break
        time.sleep(0.5)
    assert not live & gone  # the removed runs' jobs left the queue
    assert "removed_jobs" not in json.loads(cruijff("status", plan.output_dir, "--json").stdout)
    assert len(live) == 4  # r0, r1 and their evaluations stay
    # a second edit, then `cancel`: the removed run's jobs are cancelled with the rest
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0, sleep=600, experiment=experiment,
                     executor="slurm")
    out = json.loads(cruijff("cancel", plan.output_dir, "--json").stdout)
    assert sorted(r["node"] for r in out["removed_cancelled"]) == ["eval/r1/epoch_0/t0", "finetune/r1"]
    eventually(lambda: not {j for j, (_, s) in scheduler_records(experiment).items() if s in ("PENDING", "RUNNING")})


def test_a_duplicate_job_is_seen_by_status_and_apply_keeps_the_older(tmp_path, experiment):
    """Issue 13.1, the safety net: two live jobs of one node (same hash) — status shows them,
    apply keeps the older and cancels the newer."""
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=1, sleep=600, experiment=experiment,
                     executor="slurm", cluster={"arrays": False})
    ex = SlurmExecutor()
    apply(plan.output_dir, ex)
    node = plan.node("finetune/r0")
    older = node_jobs(plan)["finetune/r0"][0]
    newer = ex.submit(plan, node, [])  # as a lost sbatch would have: same name and hash
    report = collect(plan.output_dir, ex)
    assert [(d.node_id, d.keep, d.extra) for d in report.duplicates] == [("finetune/r0", older, (newer,))]
    result = apply(plan.output_dir, SlurmExecutor())
    assert [(d.keep, d.extra) for d in result.duplicates] == [(older, (newer,))]
    assert result.submitted == []
    eventually(lambda: node_jobs(plan, live_only=True)["finetune/r0"] == [older])


def test_force_only_cancels_the_selection_then_submits_it_again(tmp_path, experiment):
    """Issue 12.4: `apply --force --only SEL` re-runs a selection on purpose."""
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0, sleep=600, experiment=experiment,
                     executor="slurm")
    apply(plan.output_dir, SlurmExecutor())
    before = node_jobs(plan)
    refused = cruijff("apply", plan.output_dir, "--force")
    assert refused.returncode == 2 and "--only" in refused.stderr
    out = cruijff("apply", plan.output_dir, "--executor", "slurm", "--force", "--only", "run:r1", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert sorted(s["node"] for s in data["submitted"]) == ["eval/r1/epoch_0/t0", "finetune/r1"]
    assert sorted(data["replaced_jobs"]) == sorted(before["finetune/r1"] + before["eval/r1/epoch_0/t0"])
    eventually(lambda: {n: len(j) for n, j in node_jobs(plan, live_only=True).items()} == {n.id: 1 for n in plan.nodes})
    live = node_jobs(plan, live_only=True)
    assert live["finetune/r0"] == before["finetune/r0"]  # not selected: untouched
    assert live["finetune/r1"] != before["finetune/r1"]
