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
open(sys.argv[1], "w").close()  # handlers in
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
                      commands=[[sys.executable, str(tmp_path / "stand_in.py"), str(tmp_path / "ready")]],
                      resume={"max_attempts": max_attempts})
    path = tmp_path / "job.sbatch"
    path.write_text(text)
    return path


def events(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "node" / "record.jsonl").read_text().splitlines()]


def started(tmp_path: Path) -> bool:
    path = tmp_path / "node" / "record.jsonl"
    return path.is_file() and path.stat().st_size > 0


@pytest.mark.parametrize("sig, after", [(signal.SIGUSR1, 0.2), (signal.SIGTERM, "ready")])
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
    while after == "ready" and not (tmp_path / "ready").exists():  # TERM once the recipe can save
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2 if after != "ready" else 0)
    proc.send_signal(sig)  # to the batch shell only, as SLURM's --signal=B:USR1 does
    assert proc.wait(timeout=20) == EXIT_RESUMABLE
    end = events(tmp_path)[-1]
    assert (end["event"], end["exit_code"], end["signal"]) == ("end", EXIT_RESUMABLE, sig.name[3:])


def attempt_lines(job: str, steps: list[int | None]) -> str:
    """record.jsonl of finished attempts of one job, each with its last checkpoint step (None: none)."""
    out = []
    for i, step in enumerate(steps):
        out.append({"event": "start", "time": 10 * i, "job_id": job})
        if step is not None:
            out.append({"event": "checkpoint", "time": 10 * i + 1, "step": step})
        out.append({"event": "end", "time": 10 * i + 2, "job_id": job, "exit_code": 85, "signal": "USR1"})
    return "".join(json.dumps(e) + "\n" for e in out)


@pytest.mark.parametrize("steps, stalled", [
    ([], 0), ([4], 0), ([None], 1), ([4, 8, 12, 16, 20, 24, 28], 0),  # progress every time: never stopped
    ([4, 4, None], 2), ([4, 8, None, 8, 3], 3), ([None, None, 2], 0)])
def test_attempts_without_progress_are_counted_not_restarts(tmp_path, steps, stalled):
    from cruijff.run.records import stalled_attempts

    path = tmp_path / "record.jsonl"
    path.write_text(attempt_lines("7", steps) + attempt_lines("8", [None, None, None]))
    assert stalled_attempts(read_attempts(path), "7", current=True) == stalled
    path.write_text(path.read_text() + json.dumps({"event": "start", "time": 99, "job_id": "7"}) + "\n")
    assert stalled_attempts(read_attempts(path), "7", current=False) == stalled  # the running one left out


def run_script(tmp_path, max_attempts: int, restart_count: int, steps: list[int | None]):
    path = script(tmp_path, max_attempts=max_attempts)
    (tmp_path / "node" / "record.jsonl").write_text(attempt_lines("77", steps))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(SLURM_RESTART_COUNT=str(restart_count), CRUIJFF_JOB_ID="77",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(["bash", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc


def test_a_job_that_saved_nothing_new_in_max_attempts_attempts_fails_at_once(tmp_path):
    proc = run_script(tmp_path, max_attempts=2, restart_count=2, steps=[8, 8, 8])
    assert proc.wait(timeout=30) == 3
    new = events(tmp_path)[-3:]
    assert [e["event"] for e in new] == ["start", "error", "end"]
    assert "2 attempts in a row saved no new checkpoint" in new[1]["message"]


def test_a_job_that_progresses_every_attempt_runs_past_max_attempts_restarts(tmp_path):
    proc = run_script(tmp_path, max_attempts=2, restart_count=6, steps=[4, 8, 12, 16, 20, 24])
    deadline = time.monotonic() + 20
    while not (tmp_path / "ready").exists():  # the stand-in recipe runs: the bound let it
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == EXIT_RESUMABLE  # it ran the recipe, which saved and stopped


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
