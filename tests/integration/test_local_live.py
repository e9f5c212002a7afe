"""`status` and `cancel` while `apply --executor local` runs (issue 12, items 6 and 7): real
processes, real job scripts; what ran is read from each job's record.jsonl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cruijff.run.records import read_attempts
from cruijff.run.state import State
from tests.helpers_plans import make_plan

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def start_apply(plan) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cruijff", "apply", plan.output_dir, "--executor", "local"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_started(plan, node_id: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not read_attempts(Path(plan.output_dir) / node_id / "record.jsonl"):
        assert time.time() < deadline, f"{node_id} did not start"
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)


def test_status_while_a_local_apply_runs_shows_pending_and_running(tmp_path):
    plan = make_plan(tmp_path, runs=2, evals_per_run=2, base_evals=1, sleep=30, max_parallel=1)
    proc = start_apply(plan)
    try:
        wait_started(plan, "finetune/r0")
        for args in ([], ["--json"]):
            out = cli("status", plan.output_dir, *args)
            assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        nodes = {n["id"]: n for n in report["nodes"]}
        assert nodes["finetune/r0"]["state"] == "running" and nodes["finetune/r0"]["reason"] is None
        rest = {i: n["state"] for i, n in nodes.items() if i != "finetune/r0"}
        assert set(rest.values()) == {"pending"}, rest  # not cancelled, not blocked
        assert proc.poll() is None  # status took nothing from the apply
    finally:
        stop(proc)


def test_cancel_stops_the_selected_jobs_of_a_running_local_apply(tmp_path):
    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0, sleep=1, max_parallel=1,
                     sleeps={"finetune/r0": 60})
    proc = start_apply(plan)
    try:
        wait_started(plan, "finetune/r0")
        t0 = time.time()
        out = cli("cancel", plan.output_dir, "--only", "run:r0", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        cancelled = {c["node"] for c in json.loads(out.stdout)["cancelled"]}
        assert cancelled == {"finetune/r0", "eval/r0/epoch_0/t0"}
        assert time.time() - t0 < 20
        # the job's own record: it was killed long before its 60 s sleep ended
        (attempt,) = read_attempts(Path(plan.output_dir) / "finetune/r0/record.jsonl")
        assert attempt.finished and attempt.end - attempt.start < 30
        proc.wait(timeout=60)
        assert proc.returncode == 1  # the apply says that not everything completed
        with State(plan.output_dir) as state:
            final = {s.node_id: (s.final_state, s.reason) for s in state.current().values()}
        assert final["finetune/r0"] == ("cancelled", "cancelled by `cruijff cancel`")
        assert final["eval/r0/epoch_0/t0"][0] == "cancelled"
        assert final["finetune/r1"][0] == final["eval/r1/epoch_0/t0"][0] == "completed"  # the rest ran
        assert not read_attempts(Path(plan.output_dir) / "eval/r0/epoch_0/t0/record.jsonl")  # never started
        shown = json.loads(cli("status", plan.output_dir, "--json").stdout)
        states = {n["id"]: n["label"] for n in shown["nodes"]}
        assert states["finetune/r0"] == "cancelled" and states["finetune/r1"] == "done"
    finally:
        stop(proc)


def test_cancel_errors_are_json_with_json(tmp_path):
    out = cli("cancel", str(tmp_path / "missing"), "--json")
    assert out.returncode != 0
    error = json.loads(out.stdout)
    assert error["ok"] is False and error["kind"] == "cruijff.error" and error["error"]["message"]
