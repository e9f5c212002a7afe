"""apply/status/cancel against the real single-node SLURM (scripts/slurm_cluster.sh).

Every test uses its own experiment name, so job names (`<experiment>:<node id>`) never meet
another test's jobs on the shared cluster. Job counts are checked with squeue/sacct directly,
not through cruijff's own state.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from cruijff.run.apply import apply
from cruijff.run.executors.slurm import SlurmExecutor, default_runner
from cruijff.run.status import collect
from tests.helpers_plans import make_plan, starts, trace

pytestmark = pytest.mark.slurm
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def experiment(slurm_cluster) -> str:
    return f"t{uuid.uuid4().hex[:8]}"


def no_sacct_runner(argv, env=None):
    """A cluster without accounting: sacct fails as it does where slurmdbd is not configured."""
    if argv[0] == "sacct":
        return subprocess.CompletedProcess(argv, 1, "", "sacct: error: Slurm accounting storage is disabled")
    return default_runner(argv, env)


def scheduler_jobs(experiment: str) -> dict[str, str]:
    """job id -> job name of this experiment's jobs, straight from squeue and sacct (a pending
    array that sacct lists as `12_[0-1]` counts as its tasks, as squeue -r lists them)."""
    from tests.helpers_faults import _expand

    out: dict[str, str] = {}
    q = subprocess.run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%j"], capture_output=True, text=True, check=True)
    a = subprocess.run(["sacct", "-X", "-n", "-P", "--starttime=now-2hours", "-o", "JobID,JobName%300"],
                       capture_output=True, text=True)
    for line in q.stdout.splitlines() + a.stdout.splitlines():
        job_id, _, name = line.strip().partition("|")
        if name.startswith(f"{experiment}:"):
            out.update(dict.fromkeys(_expand(job_id), name))
    return out


def wait_settled(plan, executor, timeout: float = 90) -> dict[str, str]:
    deadline = time.time() + timeout
    while True:
        report = collect(plan.output_dir, executor)
        if report.settled or time.time() > deadline:
            return {n.id: n.label for n in report.nodes}
        time.sleep(0.5)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_chain_finishes_in_order(tmp_path, experiment):
    plan = make_plan(tmp_path, runs=1, evals_per_run=2, base_evals=1, sleep=0.5, experiment=experiment,
                     executor="slurm")
    ex = SlurmExecutor()
    result = apply(plan.output_dir, ex)
    assert len(result.submitted) == 4
    assert set(wait_settled(plan, ex).values()) == {"done"}
    at = {(n, e): t for n, e, t in trace(plan)}
    for node in plan.nodes:
        for p in node.parents:
            assert at[(p, "end")] <= at[(node.id, "start")]
    assert len(scheduler_jobs(experiment)) == 4
    assert apply(plan.output_dir, ex).submitted == []


@pytest.mark.parametrize("runner", [default_runner, no_sacct_runner], ids=["sacct", "no-sacct"])
def test_failing_finetune_cancels_its_evals_and_retry_resubmits_only_that_subtree(tmp_path, experiment, runner):
    plan = make_plan(tmp_path, runs=2, evals_per_run=2, base_evals=0, fail={"finetune/r1"}, sleep=0.2,
                     experiment=experiment, executor="slurm")
    ex = SlurmExecutor(runner)
    apply(plan.output_dir, ex)
    shown = wait_settled(plan, ex)
    assert shown["finetune/r1"] == "failed"
    assert shown["eval/r1/epoch_0/t0"] == shown["eval/r1/epoch_0/t1"] == "blocked-by-finetune/r1"
    assert shown["finetune/r0"] == shown["eval/r0/epoch_0/t1"] == "done"
    assert starts(plan)["eval/r1/epoch_0/t0"] == 0  # never ran: killed by its invalid dependency
    assert apply(plan.output_dir, ex).submitted == []
    make_plan(tmp_path, runs=2, evals_per_run=2, base_evals=0, sleep=0.2, experiment=experiment,
              executor="slurm")  # the cause is fixed; hashes unchanged
    retry = apply(plan.output_dir, ex, retry_failed=True)
    assert [n for n, _ in retry.submitted] == ["finetune/r1", "eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1"]
    assert set(wait_settled(plan, ex).values()) == {"done"}
    assert len(scheduler_jobs(experiment)) == 6 + 3


@pytest.mark.parametrize("k", [1, 3])
def test_sigkill_after_k_submissions_then_rerun_leaves_exactly_n_jobs(tmp_path, experiment, k):
    """Killed right after the k-th sbatch (arrays included): the re-run adopts that submission's
    jobs, submits only the rest, and every node runs exactly once."""
    plan = make_plan(tmp_path, runs=2, evals_per_run=2, base_evals=1, sleep=0.2, experiment=experiment,
                     executor="slurm")
    n = len(plan.nodes)
    first = cli("apply", plan.output_dir, "--executor", "slurm", env={"CRUIJFF_TEST_KILL_AFTER": str(k)})
    assert first.returncode == -signal.SIGKILL, first.stderr
    queued = len(scheduler_jobs(experiment))
    assert 0 < queued < n
    second = cli("apply", plan.output_dir, "--executor", "slurm", "--json")
    assert second.returncode == 0, second.stderr
    data = json.loads(second.stdout)
    assert data["adopted"] and len(data["submitted"]) == n - queued
    ex = SlurmExecutor()
    assert set(wait_settled(plan, ex).values()) == {"done"}
    assert len(scheduler_jobs(experiment)) == n  # one job (or array task) per node, none twice
    assert all(c == 1 for c in starts(plan).values())


def test_cli_status_and_cancel(tmp_path, experiment):
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0, sleep=60, experiment=experiment,
                     executor="slurm")
    assert cli("apply", plan.output_dir).returncode == 0  # auto → slurm: sbatch is on PATH
    status = json.loads(cli("status", plan.output_dir, "--json").stdout)
    assert status["executor"] == "slurm"
    assert status["counts"].get("pending", 0) + status["counts"].get("running", 0) == 2
    out = cli("cancel", plan.output_dir, "--json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["cancelled"]) == 2
    shown = wait_settled(plan, SlurmExecutor())
    assert shown["finetune/r0"] == "cancelled"
    assert shown["eval/r0/epoch_0/t0"] in ("cancelled", "blocked-by-finetune/r0")
