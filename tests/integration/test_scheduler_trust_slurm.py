"""The scheduler's answer, trusted only when it is one (issue 17, items 1 and 4), on the real SLURM.

Counts come from squeue + sacct directly (tests/integration/test_apply_slurm.scheduler_jobs),
never from cruijff's own state.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cruijff.run.apply import apply
from cruijff.run.executors.slurm import SlurmExecutor, default_runner
from cruijff.run.status import collect
from tests.helpers_plans import make_plan
from tests.integration.test_apply_slurm import REPO, cli, experiment, scheduler_jobs  # noqa: F401 (fixture)

pytestmark = pytest.mark.slurm
SLURM_CONF = Path("/etc/slurm/slurm.conf")


def job_ids(experiment: str) -> set[str]:
    """This experiment's job ids in squeue + sacct, a pending array's `12_[0-3]` as its tasks."""
    from cruijff.run.executors.slurm import _expand_array_key

    return {key for job_id in scheduler_jobs(experiment) for key in _expand_array_key(job_id)}


def live_states(experiment: str) -> dict[str, str]:
    """job id -> SLURM state of this experiment's jobs still in squeue (tasks one per line)."""
    q = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%j|%T"], capture_output=True, text=True, check=True)
    out = {}
    for line in q.stdout.splitlines():
        job_id, name, state = line.strip().split("|")
        if name.startswith(f"{experiment}:"):
            out[job_id] = state
    return out


@pytest.fixture
def unreachable_squeue(tmp_path) -> dict[str, str]:
    """PATH with an `squeue` that runs the real one against a slurm.conf whose SlurmctldPort is
    wrong: 22.05 then exits 0 with {"errors": [...], "jobs": []}."""
    conf = SLURM_CONF.resolve()
    text = re.sub(r"(?m)^SlurmctldPort=.*\n?", "", conf.read_text())
    etc = tmp_path / "etc"
    etc.mkdir()
    for other in conf.parent.iterdir():  # cgroup.conf, gres.conf ... next to it
        if other.name != conf.name and other.is_file() and os.access(other, os.R_OK):
            (etc / other.name).write_text(other.read_text())
    (etc / "slurm.conf").write_text(text + "SlurmctldPort=1\nMessageTimeout=2\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = subprocess.run(["which", "squeue"], capture_output=True, text=True, check=True).stdout.strip()
    wrapper = bin_dir / "squeue"
    wrapper.write_text(f"#!/bin/sh\nSLURM_CONF={etc / 'slurm.conf'} exec {real} \"$@\"\n")
    wrapper.chmod(0o755)
    probe = subprocess.run([str(wrapper), "--json", "--me"], capture_output=True, text=True)
    assert probe.returncode == 0 and json.loads(probe.stdout)["errors"], "the wrapper must break squeue"
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_unreachable_controller_stops_status_cancel_and_apply(tmp_path, experiment, unreachable_squeue):
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0, sleep=120, experiment=experiment,
                     executor="slurm")
    apply(plan.output_dir, SlurmExecutor())
    before = job_ids(experiment)
    assert len(before) == 4
    try:
        env = unreachable_squeue
        status = cli("status", plan.output_dir, env=env)
        assert status.returncode == 1 and "squeue could not read the queue" in status.stderr, status
        assert "Traceback" not in status.stderr and "failed" not in status.stdout
        as_json = cli("status", plan.output_dir, "--json", env=env)
        error = json.loads(as_json.stdout)
        assert as_json.returncode == 1 and error["kind"] == "cruijff.error" and error["command"] == "status"
        assert "squeue could not read the queue" in error["error"]["message"]
        cancel = cli("cancel", plan.output_dir, "--json", env=env)
        assert cancel.returncode == 1 and json.loads(cancel.stdout)["ok"] is False, cancel
        for args in (["apply", plan.output_dir], ["apply", plan.output_dir, "--retry-failed"]):
            again = cli(*args, env=env)
            assert again.returncode == 1 and "squeue could not read the queue" in again.stderr, again
        assert job_ids(experiment) == before  # nothing resubmitted
        states = live_states(experiment)
        assert len(states) == 4 and set(states.values()) <= {"PENDING", "RUNNING"}  # nothing cancelled
        shown = json.loads(cli("status", plan.output_dir, "--json").stdout)  # the real squeue again
        assert shown["counts"].get("pending", 0) + shown["counts"].get("running", 0) == 4
    finally:
        cli("cancel", plan.output_dir)


def test_failing_accounting_is_an_error_not_an_empty_history(tmp_path, experiment):
    """sacct that cannot reach slurmdbd (not: accounting disabled) stops status and apply too."""
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0, sleep=60, experiment=experiment,
                     executor="slurm")

    def sacct_down(argv, env=None):
        if argv[0] == "sacct":
            return subprocess.CompletedProcess(
                argv, 1, "", "sacct: error: Problem talking to the database: Connection refused\n")
        return default_runner(argv, env)

    apply(plan.output_dir, SlurmExecutor())
    try:
        with pytest.raises(Exception, match="sacct failed: Problem talking to the database"):
            collect(plan.output_dir, SlurmExecutor(sacct_down))
        with pytest.raises(Exception, match="sacct failed"):
            apply(plan.output_dir, SlurmExecutor(sacct_down), retry_failed=True)
        assert len(job_ids(experiment)) == 2
    finally:
        cli("cancel", plan.output_dir)


@pytest.mark.parametrize("when", ["after-squeue", "before-squeue"])
def test_a_job_submitted_while_status_reads_is_never_cancelled(tmp_path, experiment, when):
    """An apply that submits between status's reads (injected at squeue, before or after it ran):
    its jobs show pending (or not submitted), never cancelled, and nothing below them blocked."""
    plan = make_plan(tmp_path, runs=3, evals_per_run=2, base_evals=1, sleep=120, experiment=experiment,
                     executor="slurm")
    apply(plan.output_dir, SlurmExecutor(), only="run:r0")  # state.db exists; the rest comes in between
    done = []

    def interleaving(argv, env=None):
        if argv[0] == "squeue" and not done:
            done.append(True)
            if when == "before-squeue":
                apply(plan.output_dir, SlurmExecutor())
                return default_runner(argv, env)
            answer = default_runner(argv, env)
            apply(plan.output_dir, SlurmExecutor())  # lands after squeue answered
            return answer
        return default_runner(argv, env)

    try:
        report = collect(plan.output_dir, SlurmExecutor(interleaving))
        assert done
        states = {n.id: n.state for n in report.nodes}
        assert set(states.values()) <= {"pending", "running", "not submitted"}, states
        assert len(job_ids(experiment)) == len(plan.nodes)
        later = collect(plan.output_dir, SlurmExecutor())
        assert {n.state for n in later.nodes} <= {"pending", "running"}
    finally:
        cli("cancel", plan.output_dir)


def test_status_in_a_loop_during_an_apply_never_shows_cancelled(tmp_path, experiment):
    """The race as a user meets it: `status` refreshed while an apply submits 200 plain jobs."""
    plan = make_plan(tmp_path, runs=50, evals_per_run=3, base_evals=0, sleep=120, experiment=experiment,
                     executor="slurm", cluster={"arrays": False, "submit_rate": 20})
    apply(plan.output_dir, SlurmExecutor(), only="run:r0")  # state.db exists from the start
    proc = subprocess.Popen([sys.executable, "-m", "cruijff", "apply", plan.output_dir], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, set[str]] = {}
    refreshes = 0
    try:
        while proc.poll() is None:
            for n in collect(plan.output_dir, SlurmExecutor()).nodes:
                seen.setdefault(n.state, set()).add(n.id)
            refreshes += 1
        assert proc.returncode == 0, proc.stderr.read()
        assert refreshes >= 5
        assert set(seen) <= {"pending", "running", "not submitted"}, {k: sorted(v)[:5] for k, v in seen.items()}
        assert len(job_ids(experiment)) == len(plan.nodes)
    finally:
        proc.wait()
        cli("cancel", plan.output_dir)
