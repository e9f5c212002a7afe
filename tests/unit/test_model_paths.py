"""Model folders are checked at plan time (issue 23, items 1 and 2).

Reachable folders must hold config.json, a tokenizer and their family's checkpoint files; a
folder not reachable here is one warning on a cluster, and its job scripts check it first
(cruijff.preflight, run here as the job would); with executor local it is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.compiler.modelfiles import checkpoint_names
from cruijff.compiler.render.yaml import dump_yaml
from tests.helpers_models import placed_tiny, stand_in_model

REPO = Path(__file__).resolve().parents[2]
TASK = "from inspect_ai import task\n\n@task\ndef t(data, format=None, split=None, template=None, system=None):\n    pass\n"


def write(tmp: Path, *, executor: str, model_path: str, family: str = "SmolLM2-135M-Instruct") -> Path:
    rows = [{"input": f"w{i}", "output": f"W{i}"} for i in range(40)]
    (tmp / "words.json").write_text(json.dumps({"train": rows, "validation": rows[:4], "test": rows[:4]}))
    (tmp / "t.py").write_text(TASK)
    m = {"experiment": "paths", "output_dir": "out", "executor": {"kind": executor},
         "models": {"small": {"path": model_path, "family": family}},
         "datasets": {"words": {"path": "words.json", "format": "instruct_json"}},
         "finetune": {"hyperparameters": {"batch_size": 1, "warmup_steps": 0}, "resources": {"gpus": 0}},
         "eval": {"tasks": [{"name": "t", "file": "t.py", "task": "t"}], "base_models": True,
                  "resources": {"gpus": 0}}}
    path = tmp / "m.yaml"
    path.write_text(dump_yaml(m))
    return path


def model_line(path: Path) -> str:
    """file:line:col of models.small.path's value."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("path:") and "words.json" not in line and "out" != line.split(":")[1].strip():
            return f"{path}:{i}:{line.index(':') + 3}"
    raise AssertionError("no model path line")


def plan(path: Path, *extra: str):
    return CliRunner().invoke(cli, ["plan", str(path), *extra])


@pytest.mark.parametrize("executor", ["local", "slurm"])
def test_a_reachable_folder_without_its_files_is_an_error_at_its_line(tmp_path, executor):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    path = write(tmp_path, executor=executor, model_path="model")
    res = plan(path)
    assert res.exit_code == 2, res.output
    assert f"{model_line(path)}: model 'small': {folder} has no model.safetensors, tokenizer.json" in res.stderr
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


def test_a_complete_folder_plans(tmp_path):
    stand_in_model(tmp_path / "model")
    res = plan(write(tmp_path, executor="local", model_path="model"))
    assert res.exit_code == 0, res.output
    assert "not reachable" not in res.output


def test_a_typo_with_executor_local_is_an_error_that_names_the_close_folder(tmp_path):
    stand_in_model(tmp_path / "model")
    path = write(tmp_path, executor="local", model_path="modle")
    res = plan(path)
    assert res.exit_code == 2, res.output
    assert f"{model_line(path)}: model 'small': {tmp_path / 'modle'} does not exist" in res.stderr
    assert f"did you mean {tmp_path / 'model'}" in res.stderr and "executor: local" in res.stderr
    assert not (tmp_path / "out").exists()


def test_the_shipped_tiny_experiment_says_to_build_its_model_first(tmp_path):
    """A fresh clone has no experiments/tiny/model: plan says so instead of 35 s of failing jobs."""
    assert not (REPO / "experiments" / "tiny" / "model").exists()
    res = plan(REPO / "experiments" / "tiny.yaml", "--out", str(tmp_path / "out"))
    assert res.exit_code == 2 and "experiments/tiny.yaml:11:11: model 'tiny'" in res.stderr, res.output
    assert not (tmp_path / "out").exists()


def test_an_unreachable_dataset_or_generator_input_with_executor_local_is_an_error(tmp_path):
    tiny = placed_tiny(tmp_path)
    tiny.write_text(tiny.read_text().replace("generate: {kind: capitalization, count: 120, letters: 5, seed: 1}", ""))
    res = plan(tiny)
    assert res.exit_code == 2, res.output
    assert f"{tiny}:29:11: dataset 'words': {tmp_path / 'tiny/data/capitalization.json'} does not exist" in res.stderr


def test_an_unreachable_folder_on_a_cluster_is_one_line_and_the_job_checks_it_first(tmp_path):
    path = write(tmp_path, executor="slurm", model_path="/nowhere/SmolLM2")
    res = plan(path, "--json")
    assert res.exit_code == 0, res.output
    warnings = [w for w in json.loads(res.stdout)["warnings"] if "model 'small'" in w["message"]]
    assert len(warnings) == 1 and "not reachable from here; checked when the job starts" in warnings[0]["message"]
    out = tmp_path / "out"
    for node in ("finetune/small_words", "base_eval/small/words/t"):
        script = (out / node / "job.sbatch").read_text()
        check = script.index("python -m cruijff.preflight model small /nowhere/SmolLM2 config.json model.safetensors")
        assert check < script.index("tune run" if node.startswith("finetune") else "inspect eval")
    # the check, run as the job runs it: an error event in record.jsonl, exit 1, before any training
    node_dir = out / "finetune/small_words"
    node_dir.mkdir(parents=True, exist_ok=True)
    line = next(l for l in (node_dir / "job.sbatch").read_text().splitlines() if "cruijff.preflight" in l)
    env = {**os.environ, "CRUIJFF_NODE_DIR": str(node_dir), "PYTHONPATH": str(REPO),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    (node_dir / "record.jsonl").write_text('{"event": "start", "time": 1, "job_id": "1"}\n')
    done = subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "/nowhere/SmolLM2 does not exist" in done.stderr
    events = [json.loads(l) for l in (node_dir / "record.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "error" and "fix models.small.path" in events[-1]["message"]


def test_a_reachable_folder_gets_no_job_check(tmp_path):
    stand_in_model(tmp_path / "model")
    assert plan(write(tmp_path, executor="slurm", model_path="model")).exit_code == 0
    assert "cruijff.preflight" not in (tmp_path / "out/finetune/small_words/job.sbatch").read_text()


def test_sharded_checkpoint_names_are_torchtunes():
    assert checkpoint_names({"filename_format": "model-{}-of-{}.safetensors", "max_filename": "00002"}) == [
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
