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

pytestmark = [pytest.mark.inspect, pytest.mark.slow]  # each test starts inspect and the model 2-3 times (~2 min)

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


@pytest.mark.slurm
def test_an_evaluation_requeued_by_slurm_continues_its_log(slurm_cluster, tiny_model_dir, tmp_path):
    """Through the rendered job script on the real local SLURM: a base-model evaluation is requeued
    (`scontrol requeue`: SIGTERM to the job, SIGKILL 5 s later) after k samples; the same job id
    runs again, continues the unfinished log and generates only the other samples; record.jsonl and
    `status` say how many were kept."""
    import uuid

    from cruijff.compiler.render.yaml import dump_yaml
    from tests.helpers_faults import cancel_experiment, cruijff, env_with, eventually
    from tests.helpers_finetune import tiny_manifest

    data = tmp_path / "words.json"
    rows = [{"input": w, "output": w.capitalize()} for w in WORDS[:12]]
    data.write_text(json.dumps({"train": rows, "validation": rows[:2], "test": rows}))
    generations = tmp_path / "generations.txt"
    experiment = f"evalresume{uuid.uuid4().hex[:8]}"
    m = tiny_manifest(tiny_model_dir, data)
    m.update(experiment=experiment, output_dir=str(tmp_path / "plan"), executor={"kind": "slurm"},
             cluster={"env": {"variables": {"CRUIJFF_TEST_SAMPLE_SECONDS": "0.5", "OMP_NUM_THREADS": "1",
                                            "CRUIJFF_TEST_GENERATIONS": str(generations)}}})
    m["eval"] = {"tasks": [{"name": "counted", "task": "counted_words", "file": str(TASK)}], "epochs": "last",
                 "base_models": True, "resources": {"gpus": 0, "cpus": 1, "mem": "4G", "time": "00:15:00"}}
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(dump_yaml(m))
    env = env_with(None, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    try:
        out = cruijff("apply", str(manifest), "--only", "kind:base_eval", "--json", env=env)
        assert out.returncode == 0, out.stderr
        [(node_id, job)] = [(s["node"], s["job_id"]) for s in json.loads(out.stdout)["submitted"]]
        node = tmp_path / "plan" / node_id
        eventually(lambda: len(lines(generations)) >= 3, timeout=400, every=0.1)
        assert subprocess.run(["scontrol", "requeue", job]).returncode == 0
        eventually(lambda: '"end"' in (node / "record.jsonl").read_text(), timeout=60)
        killed = lines(generations)

        def state() -> str:
            return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()

        eventually(lambda: state() == "PENDING", timeout=60)
        time.sleep(5)  # not at once: a start while slurmd still revokes the old credential fails the job
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
        eventually(lambda: state() == "", timeout=600, every=0.5)
    finally:
        cancel_experiment(experiment)
    events = [json.loads(line) for line in (node / "record.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["event"] == "end"]
    assert [e["job_id"] for e in ends] == [job, job] and ends[0]["exit_code"] == 143 and ends[1]["exit_code"] == 0
    [resume] = [e for e in events if e["event"] == "resume"]
    assert resume["samples"] == 12 and resume["reused_samples"] >= len(killed) - 1 >= 2
    every = lines(generations)
    again = every[len(killed):]
    assert len(again) == 12 - resume["reused_samples"], "a sample completed before the requeue was generated again"
    assert sorted(set(every)) == sorted(str(i) for i in range(12))
    status = json.loads(cruijff("status", str(tmp_path / "plan"), "--json", env=env).stdout)
    [n] = [n for n in status["nodes"] if n["id"] == node_id]
    assert n["state"] == "done" and n["attempts"] == 2
    assert f"{resume['reused_samples']} of 12 samples kept" in n["note"]
