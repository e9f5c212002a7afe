"""One manifest, trained and evaluated for real: tiny model, torchtune, inspect-ai, both executors.

The manifest is experiments/tiny.yaml made smaller (one run, 2 epochs, only epoch 1 saved). Through
the local executor and through the real single-node SLURM: validation loss recorded, only the
asked-for epoch exported, evaluations scored, `status` shows the scores, and `report`'s table holds
the same numbers as the inspect logs.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO

pytestmark = [pytest.mark.train, pytest.mark.inspect]


def cli(*args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    # Jobs find tune, inspect, python and cruijff on PATH (sbatch exports the environment).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"cruijff {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def small_manifest(tmp_path: Path, model_dir: Path, executor: str) -> Path:
    yaml = YAML()
    m = yaml.load((REPO / "experiments" / "tiny.yaml").read_text())
    m["experiment"] = f"e2e-{executor}-{os.getpid()}"
    m["output_dir"] = str(tmp_path / "out")
    m["executor"] = {"kind": executor, "max_parallel": 2}
    m["models"]["tiny"]["path"] = str(model_dir)
    m["datasets"]["words"]["path"] = str(tmp_path / "data" / "words.json")
    m["datasets"]["words"]["generate"] = {"kind": "capitalization", "count": 60, "letters": 5, "seed": 3}
    m["finetune"]["save_epochs"] = [1]
    m["grid"] = {"lora_rank": [4]}
    m["eval"]["tasks"][0]["file"] = str(REPO / "experiments" / "tasks" / "capitalization.py")
    m["eval"]["limit"] = 6
    path = tmp_path / "manifest.yaml"
    with path.open("w") as f:
        yaml.dump(m, f)
    return path


def wait_until_settled(out: Path, timeout: float = 900) -> dict:
    deadline = time.time() + timeout
    while True:
        answer = cli("status", str(out), "--json", check=False)  # exit 1 while a node failed or is blocked
        status = json.loads(answer.stdout)
        assert answer.returncode == (0 if status["ok"] else 1), answer.stderr
        if not {"pending", "running"} & set(status["counts"]):
            return status
        assert time.time() < deadline, f"jobs still pending/running: {status['counts']}"
        time.sleep(1)


def check_outcome(out: Path, status: dict) -> None:
    states = {n["id"]: n["state"] for n in status["nodes"]}
    assert set(states.values()) == {"done"}, states
    run = out / "finetune" / "tiny_words_r4"
    # Only the asked-for epoch is exported; the export is a clean model directory.
    assert (run / "epoch_1" / "model" / "config.json").is_file()
    assert not (run / "epoch_0" / "model").exists()
    assert not (run / "epoch_1" / "model" / "adapter_config.json").exists()
    # Validation loss recorded beside the training loss.
    metrics = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines() if line]
    assert any("val_loss" in r for r in metrics) and any("train_loss" in r for r in metrics)
    # status shows every evaluation's score once its log exists.
    scored = {n["id"]: n["score"] for n in status["nodes"] if n["kind"] in ("eval", "base_eval")}
    assert scored and all(s is not None for s in scored.values()), scored
    # report's table holds the inspect logs' numbers.
    cli("report", str(out))
    from inspect_ai.log import list_eval_logs, read_eval_log

    with (out / "report" / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    for node_id in scored:
        logs = list_eval_logs(str(out / node_id / "logs"))
        log = read_eval_log(logs[0], header_only=True)
        expected = {f"{s.name}/{k}": m.value for s in log.results.scores for k, m in s.metrics.items()}
        got = {r["metric"]: float(r["value"]) for r in rows if r["node"] == node_id}
        for metric, value in expected.items():
            assert got[metric] == pytest.approx(value), (node_id, metric)


@pytest.mark.slow  # the same outcome checks run through SLURM below; local apply runs real jobs in the tests after
def test_tiny_experiment_end_to_end_local(tmp_path, tiny_model_dir):
    manifest = small_manifest(tmp_path, tiny_model_dir, "local")
    cli("apply", str(manifest))
    out = tmp_path / "out"
    check_outcome(out, wait_until_settled(out))


@pytest.mark.slow  # token parity of text_completion is in the default tier (test_parity)
def test_tiny_text_completion_end_to_end_local(tmp_path, tiny_model_dir):
    """prompt.style text_completion (base models) through real plan + apply: the fine-tune trains
    the plain-text samples and every evaluation ran under cruijff's plain-text template with the
    tokenizer's own BOS (inspect's log records the model args it was given); token parity itself is
    tests/integration/test_parity.py::test_parity_text_completion."""
    from inspect_ai.log import list_eval_logs, read_eval_log

    from cruijff.prompting import TEXT_COMPLETION_CHAT_TEMPLATE

    manifest = small_manifest(tmp_path, tiny_model_dir, "local")
    yaml = YAML()
    m = yaml.load(manifest.read_text())
    m["prompt"] = {"style": "text_completion", "template": "Word: {input}\nCapitalized: "}
    with manifest.open("w") as f:
        yaml.dump(m, f)
    cli("apply", str(manifest))
    out = tmp_path / "out"
    check_outcome(out, wait_until_settled(out))
    ft = YAML(typ="safe").load((out / "finetune" / "tiny_words_r4" / "finetune.yaml").read_text())
    assert ft["dataset"]["style"] == "text_completion" and ft["dataset"]["system"] is None
    evals = [p.parent for p in out.glob("*eval/**/model_config.yaml")]
    assert len(evals) == 2
    for node in evals:
        log = read_eval_log(list_eval_logs(str(node / "logs"))[0], header_only=True)
        assert log.eval.model_args["chat_template"] == TEXT_COMPLETION_CHAT_TEMPLATE
        assert log.eval.model_args["tokenizer_call_args"] == {"add_special_tokens": True}


def test_tiny_experiment_end_to_end_slurm(tmp_path, tiny_model_dir, slurm_cluster):
    manifest = small_manifest(tmp_path, tiny_model_dir, "slurm")
    started = time.time()
    cli("apply", str(manifest))
    out = tmp_path / "out"
    # apply returned at once: the evaluation is held by afterok, the base evaluation is not.
    plan = json.loads((out / "plan.json").read_text())
    script = (out / "eval" / "tiny_words_r4" / "epoch_1" / "capitalization" / "job.sbatch").read_text()
    assert "inspect eval" in script
    squeue = subprocess.run(["squeue", "--noheader", "--format=%j|%E"], capture_output=True, text=True).stdout
    deps = {line.split("|")[0]: line.split("|")[1] for line in squeue.splitlines() if "|" in line}
    eval_name = f"{plan['experiment']}:eval/tiny_words_r4/epoch_1/capitalization"
    base_name = f"{plan['experiment']}:base_eval/tiny/words/capitalization"
    if eval_name in deps:  # still waiting for its fine-tune
        assert deps[eval_name].startswith("afterok")
    status = wait_until_settled(out)
    check_outcome(out, status)
    times = {n["id"]: n for n in status["nodes"]}
    assert times[f"eval/tiny_words_r4/epoch_1/capitalization"]["job_id"]
    assert base_name.split(":", 1)[1] in times
    assert time.time() - started < 900


def test_failures_say_why_in_status_local(tmp_path, tiny_model_dir):
    """Issue 12.1 and 12.3 through apply and status: a fine-tune whose every answer is truncated
    fails (its evaluations never run) and a base evaluation whose task raises fails, each with its
    reason in `status`; the evaluation that works still scores."""
    manifest = small_manifest(tmp_path, tiny_model_dir, "local")
    broken = tmp_path / "broken.py"
    broken.write_text("from inspect_ai import task\n\n\n@task\ndef unreadable(**kwargs):\n"
                      "    raise ValueError('the task could not read its data')\n")
    yaml = YAML()
    m = yaml.load(manifest.read_text())
    m["finetune"]["hyperparameters"]["max_seq_len"] = 8  # the prompt alone is longer
    m["eval"]["tasks"].append({"name": "broken", "file": str(broken), "task": "unreadable"})
    with manifest.open("w") as f:
        yaml.dump(m, f)
    apply = cli("apply", str(manifest), check=False)
    assert apply.returncode != 0
    out = tmp_path / "out"
    status = wait_until_settled(out)
    nodes = {n["id"]: n for n in status["nodes"]}
    ft = nodes["finetune/tiny_words_r4"]
    assert (ft["state"], ft["exit_code"]) == ("failed", 1)
    assert ft["reason"].startswith("fine-tune failed: no row of the training split keeps an answer token "
                                   "for the loss: truncation to max_seq_len 8 cuts every answer")
    evals = [n for n in status["nodes"] if n["kind"] == "eval"]
    assert evals and all(n["state"] == "blocked" for n in evals)
    assert not list((out / "eval").rglob("*.eval")), "an evaluation of the failed fine-tune ran"
    bad = nodes["base_eval/tiny/words/broken"]
    assert bad["state"] == "failed" and bad["reason"] == (
        "evaluation failed: ValueError: the task could not read its data (inspect exit 1, no log written)")
    assert nodes["base_eval/tiny/words/capitalization"]["score"] is not None
    shown = cli("status", str(out), check=False)
    assert shown.returncode == 1  # a failed run is visible to scripts (issue 23, item 5)
    text = shown.stdout
    assert "failed base_eval/tiny/words/broken (exit 1: evaluation failed: ValueError: the task could " \
           "not read its data" in " ".join(text.split())
    assert "scores: capitalization " in text
