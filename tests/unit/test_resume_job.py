"""The job-script side of resumable fine-tunes (cruijff.compiler.render.sbatch.resumable_lines) and
what record.jsonl and status make of it (cruijff.run.records.attempt_note).

The script runs for real under bash with a stand-in recipe (a Python process that saves on
USR1/TERM and exits 85 like cruijff.train.resume does); the real recipe and the real SLURM are in
tests/integration/test_resume.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cruijff.compiler.render.sbatch import grace_seconds, job_script, time_limit_seconds
from cruijff.plan import Resources
from cruijff.run.records import attempt_note, read_attempts
from cruijff.train.resume import EXIT_RESUMABLE

STAND_IN = f"""
import signal, sys, time
time.sleep(1.0)  # the recipe's imports: a USR1 now must be neither fatal nor lost
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
for _ in range(200):
    time.sleep(0.05)
    if got:
        sys.exit({EXIT_RESUMABLE})
"""


def script(tmp_path: Path, max_attempts: int = 5) -> Path:
    node = tmp_path / "node"
    node.mkdir()
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    text = job_script(title="t", job_name="x:finetune/r", node_dir=str(node),
                      resources=Resources(gpus=0, cpus=1, mem="1G", time="00:01:00"), cluster={},
                      commands=[[sys.executable, str(tmp_path / "stand_in.py")]],
                      resume={"max_attempts": max_attempts})
    path = tmp_path / "job.sbatch"
    path.write_text(text)
    return path


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "node" / "record.jsonl").read_text().splitlines()]


def started(tmp_path: Path) -> bool:
    path = tmp_path / "node" / "record.jsonl"
    return path.is_file() and path.stat().st_size > 0


@pytest.mark.parametrize("sig, after", [(signal.SIGUSR1, 0.2), (signal.SIGTERM, 1.6)])
def test_a_warning_reaches_the_recipe_even_during_its_start_and_the_end_is_never_0(tmp_path, sig, after):
    """USR1 during the recipe's start is kept (ignored until its handler is in, then sent again);
    TERM reaches the recipe at once (before its handler it ends it: nothing to save yet)."""
    path = script(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.Popen(["bash", str(path)], env=env)
    deadline = time.monotonic() + 10
    while not started(tmp_path):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(after)
    proc.send_signal(sig)  # to the batch shell only, as SLURM's --signal=B:USR1 does
    assert proc.wait(timeout=20) == EXIT_RESUMABLE
    end = events(tmp_path)[-1]
    assert (end["event"], end["exit_code"], end["signal"]) == ("end", EXIT_RESUMABLE, sig.name[3:])


def test_an_attempt_past_max_attempts_fails_at_once(tmp_path):
    path = script(tmp_path, max_attempts=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(["bash", str(path)], env={**env, "SLURM_RESTART_COUNT": "2"}, capture_output=True,
                          text=True, timeout=20)
    assert proc.returncode == 3
    kinds = [e["event"] for e in events(tmp_path)]
    assert kinds == ["start", "error", "end"] and "max_attempts" in events(tmp_path)[1]["message"]


def test_job_scripts_are_requeueable_and_a_finetune_is_warned_before_its_limit():
    common = dict(title="t", job_name="x:n", node_dir="/tmp/n", cluster={}, commands=[["true"]])
    r = Resources(gpus=0, cpus=1, mem="1G", time="00:01:00")
    ft = job_script(resources=r, resume={}, **common)
    ev = job_script(resources=r, **common)
    assert "#SBATCH --requeue" in ft and "#SBATCH --requeue" in ev
    assert "#SBATCH --signal=B:USR1@15" in ft and "--signal" not in ev
    assert ft.rstrip().endswith("_cruijff_resumable true")
    assert grace_seconds({}, "2-00:00:00") == 120 and grace_seconds({"grace_seconds": 600}, "1:00:00") == 600
    assert [time_limit_seconds(t) for t in ("90", "1:30", "01:00:00", "1-2", "1-0:0:5", None)] == \
        [5400, 90, 3600, 93600, 86405, None]


def test_status_note_of_a_requeued_and_resumed_finetune(tmp_path):
    path = tmp_path / "record.jsonl"
    lines = [
        {"event": "start", "time": 1, "job_id": "7"},
        {"event": "checkpoint", "time": 2, "step": 40},
        {"event": "interrupted", "time": 3, "signal": "SIGUSR1", "step": 41},
        {"event": "requeue", "time": 3, "job_id": "7", "reason": "time limit"},
        {"event": "end", "time": 4, "job_id": "7", "exit_code": 85, "signal": "USR1"},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert attempt_note(read_attempts(path), "7") == (
        1, "attempt 1, stopped after step 41 by the time limit, requeued")
    lines += [{"event": "start", "time": 5, "job_id": "7"}, {"event": "resume", "time": 6, "step": 41}]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert attempt_note(read_attempts(path), "7") == (2, "attempt 2, resumed at step 41 after the time limit")
    assert attempt_note(read_attempts(path), "8") == (0, None)
