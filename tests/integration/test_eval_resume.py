"""A killed evaluation continues from its log: real `inspect eval`, then `inspect eval-retry`.

The command is the one the compiler renders for an eval node (cruijff.compiler.render.inspect),
run by its wrapper (`python -m cruijff.scores logs -- inspect eval ...`), on the tiny Llama (CPU).
The task is the capitalization task with counted, paced generations (tests/integration/tasks/
counted_words.py). The wrapper is stopped by SIGTERM (what a requeue or preemption sends) after
k samples; the same command run again continues the unfinished log: no sample completed before
the kill is generated again, and the scores and every answer equal an uninterrupted run's.
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

from tests.conftest import REPO

pytestmark = [pytest.mark.inspect, pytest.mark.slow]  # three starts of inspect and the model (~2 min)

TASK = REPO / "tests" / "integration" / "tasks" / "counted_words.py"
WORDS = [f"word{i}" for i in range(24)]


def eval_node(root: Path, model_dir: Path, data: Path) -> tuple[Path, list[str]]:
    from cruijff.compiler.render.inspect import eval_commands, model_config
    from cruijff.compiler.render.yaml import dump_yaml

    root.mkdir(parents=True)
    (root / "model_config.yaml").write_text(dump_yaml(model_config(model_dir=str(model_dir), gpus=0, provider="hf")))
    (root / "task_config.yaml").write_text(dump_yaml({"data": str(data), "format": "instruct_json", "split": "test",
                                                      "template": "Capitalize: {input}", "system": None}))
    [argv] = eval_commands(task_file=str(TASK), task_name="counted_words", model_dir=str(model_dir),
                           provider="hf", seed=1, limit=None, metadata={}, max_tokens=8)
    assert argv[:5] == ["python", "-m", "cruijff.scores", "logs", "--"]
    inspect = str(Path(sys.executable).with_name("inspect"))
    return root, [sys.executable, *argv[1:5], inspect, *argv[6:]]


def environment(node: Path, generations: Path, seconds: float) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO), "CRUIJFF_NODE_DIR": str(node), "CRUIJFF_TEST_GENERATIONS": str(generations),
            "CRUIJFF_TEST_SAMPLE_SECONDS": str(seconds)}


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.is_file() else []


def final_log(node: Path):
    from inspect_ai.log import read_eval_log

    from cruijff.results.scores import latest

    score = latest(node / "logs")
    assert score is not None and score.status == "success", score
    return score, read_eval_log(score.path)


def test_a_killed_evaluation_continues_its_log_and_scores_as_an_uninterrupted_one(tiny_model_dir, tmp_path):
    data = tmp_path / "words.json"
    rows = [{"input": w, "output": w.capitalize()} for w in WORDS]
    data.write_text(json.dumps({"train": rows, "test": rows}))

    ref, command = eval_node(tmp_path / "reference", tiny_model_dir, data)
    proc = subprocess.run(command, cwd=ref, env=environment(ref, tmp_path / "ref.txt", 0), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    node, command = eval_node(tmp_path / "node", tiny_model_dir, data)
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    (node / "record.jsonl").write_text(json.dumps({"event": "start", "time": time.time(), "job_id": "1"}) + "\n")
    run = subprocess.Popen(command, cwd=node, env=environment(node, first, 0.3), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 400
    while len(lines(first)) < 8:
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read()[-3000:] if run.poll() else ""
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)  # to the wrapper, as a requeue does; it stops inspect
    assert run.wait(timeout=60) == 128 + signal.SIGTERM
    killed = lines(first)
    assert 8 <= len(killed) < len(WORDS)
    [log] = list((node / "logs").glob("*.eval"))

    restart = time.time()
    proc = subprocess.run(command, cwd=node, env=environment(node, second, 0), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"continuing the unfinished evaluation logs/{log.name}" in proc.stdout

    score, retried = final_log(node)
    ref_score, reference = final_log(ref)
    kept = {s.id for s in retried.samples if s.completed_at and
            __import__("datetime").datetime.fromisoformat(s.completed_at).timestamp() < restart}
    again = lines(second)
    assert len(kept) >= len(killed) - 1  # the kill may land between a generation and its record
    assert not kept & {int(i) for i in again}, "a sample completed before the kill was generated again"
    assert sorted(int(i) for i in again) == sorted(set(range(len(WORDS))) - kept)
    assert len(retried.samples) == len(WORDS)
    assert score.metrics == ref_score.metrics and score.metrics
    answers = {s.id: s.output.completion for s in retried.samples}
    assert answers == {s.id: s.output.completion for s in reference.samples}

    events = [json.loads(line) for line in (node / "record.jsonl").read_text().splitlines()]
    [resume] = [e for e in events if e["event"] == "resume"]
    assert (resume["log"], resume["reused_samples"], resume["samples"]) == (log.name, len(kept), len(WORDS))
