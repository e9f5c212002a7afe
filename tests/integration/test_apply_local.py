"""apply/status/cancel with the local executor: real subprocesses running real job scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cruijff.run.apply import apply
from cruijff.run.executors.local import LocalExecutor, orphan_group
from cruijff.run.observe import INTERRUPTED
from cruijff.run.state import State
from cruijff.run.status import collect
from tests.helpers_plans import make_plan, starts, trace

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=120, **kw)


def labels(plan) -> dict[str, str]:
    return {n.id: n.label for n in collect(plan.output_dir, LocalExecutor()).nodes}


def test_chain_runs_in_dependency_order_within_max_parallel(tmp_path):
    plan = make_plan(tmp_path, runs=2, evals_per_run=2, epochs=2, base_evals=1, sleep=0.2, max_parallel=2)
    result = apply(plan.output_dir, LocalExecutor(plan.max_parallel))
    assert result.ok and set(result.final.values()) == {"completed"}
    events = trace(plan)
    at = {(n, e): t for n, e, t in events}
    for node in plan.nodes:
        for p in node.parents:
            assert at[(p, "end")] <= at[(node.id, "start")]
    running = peak = 0
    for _, event, _ in sorted(events, key=lambda e: (e[2], e[1] == "start")):
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak <= 2
    assert set(labels(plan).values()) == {"done"}
    assert all(c == 1 for c in starts(plan).values())
    # idempotent: nothing runs again
    assert apply(plan.output_dir, LocalExecutor(2)).submitted == []


def test_failed_finetune_blocks_its_evals_and_retry_reruns_only_that_subtree(tmp_path):
    plan = make_plan(tmp_path, fail={"finetune/r1"}, sleep=0.05)
    result = apply(plan.output_dir, LocalExecutor(4))
    assert not result.ok
    assert result.final["finetune/r1"] == "failed"
    assert result.final["eval/r1/epoch_0/t0"] == "blocked"  # as status says
    shown = labels(plan)
    assert shown["finetune/r1"] == "failed"
    assert shown["eval/r1/epoch_0/t0"] == shown["eval/r1/epoch_0/t1"] == "blocked-by-finetune/r1"
    assert starts(plan)["eval/r1/epoch_0/t0"] == 0
    assert apply(plan.output_dir, LocalExecutor(4)).submitted == []
    make_plan(tmp_path, sleep=0.05)  # the cause is fixed; hashes are the same
    retry = apply(plan.output_dir, LocalExecutor(4), retry_failed=True)
    assert [n for n, _ in retry.submitted] == ["finetune/r1", "eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1"]
    assert set(labels(plan).values()) == {"done"}
    assert starts(plan) == {n.id: 2 if n.id == "finetune/r1" else 1 for n in plan.nodes}


@pytest.mark.parametrize("k", [1, 5])
def test_sigkill_after_k_submissions_then_rerun_runs_each_node_once(tmp_path, k):
    plan = make_plan(tmp_path, sleep=0.05)
    first = cli("apply", plan.output_dir, "--executor", "local", env={"CRUIJFF_TEST_KILL_AFTER": str(k)})
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert sum(starts(plan).values()) == 0
    second = cli("apply", plan.output_dir, "--executor", "local", "--json")
    assert second.returncode == 0, second.stderr
    assert len(json.loads(second.stdout)["submitted"]) == len(plan.nodes)
    assert all(c == 1 for c in starts(plan).values())
    assert set(labels(plan).values()) == {"done"}


def test_ctrl_c_kills_running_jobs_and_the_next_apply_resumes(tmp_path):
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0, sleep=30, max_parallel=2)
    proc = subprocess.Popen([sys.executable, "-m", "cruijff", "apply", plan.output_dir, "--executor", "local"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while sum(starts(plan).values()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    with State(plan.output_dir) as st:
        finals = {s.node_id: s.final_state for s in st.current().values()}
    assert finals == {n.id: INTERRUPTED for n in plan.nodes}
    pids = subprocess.run(["pgrep", "-f", str(plan.output_dir)], capture_output=True, text=True).stdout.split()
    assert pids == []  # no job left running
    assert labels(plan)["finetune/r0"] == "cancelled"
    make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0, sleep=0.05)
    resumed = apply(plan.output_dir, LocalExecutor(2))  # interrupted ≠ failed: no --retry-failed needed
    assert len(resumed.submitted) == 4 and resumed.ok


def test_second_apply_is_refused_clearly(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=0, base_evals=0, sleep=5)
    proc = subprocess.Popen([sys.executable, "-m", "cruijff", "apply", plan.output_dir, "--executor", "local"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while sum(starts(plan).values()) < 1 and time.time() < deadline:
            time.sleep(0.1)
        second = cli("apply", plan.output_dir, "--executor", "local")
        assert second.returncode == 1
        assert "another `cruijff apply` or `cancel` is running on this plan" in second.stderr
        assert "Traceback" not in second.stderr
        status = cli("status", plan.output_dir, "--json")  # status needs no lock
        assert json.loads(status.stdout)["counts"] == {"running": 1}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_cli_status_json_text_and_errors(tmp_path):
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=1, sleep=0.01)
    assert cli("apply", plan.output_dir, "--executor", "local").returncode == 0
    out = cli("status", plan.output_dir, "--json")
    data = json.loads(out.stdout)
    assert data["counts"] == {"done": 3}
    assert data["nodes"][1]["score"]["name"] == "match/accuracy"
    text = cli("status", plan.output_dir, "--only", "run:r0")
    assert "finetune" in text.stdout and "done" in text.stdout
    bad = cli("status", str(tmp_path / "nowhere"))
    assert bad.returncode != 0 and "no plan.json here" in bad.stderr and "Traceback" not in bad.stderr
    bad_sel = cli("status", plan.output_dir, "--only", "colour:red")
    assert bad_sel.returncode == 2 and "unknown selector kind" in bad_sel.stderr


def test_apply_killed_while_jobs_run_leaves_no_duplicate_runs(tmp_path):
    """SIGKILL of a local apply: its jobs die with it (or are killed by the next apply) and rerun."""
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0, sleep=30)
    proc = subprocess.Popen([sys.executable, "-m", "cruijff", "apply", plan.output_dir, "--executor", "local"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while sum(starts(plan).values()) < 1 and time.time() < deadline:
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    assert labels(plan)["finetune/r0"] in ("running", "cancelled")
    with State(plan.output_dir) as st:
        old = st.current()["finetune/r0"]
    make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0, sleep=0.05)
    result = apply(plan.output_dir, LocalExecutor(2))
    assert [n for n, _ in result.submitted] == ["finetune/r0", "eval/r0/epoch_0/t0"] and result.ok
    assert not orphan_group(old.pid, old.job_id)  # the first run's job tree is gone
    assert set(labels(plan).values()) == {"done"}
