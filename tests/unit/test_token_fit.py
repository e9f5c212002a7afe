"""`plan` measures whether the training rows fit max_seq_len (issue 12.1), with a faked measurer.

The measurer itself (a subprocess with the real tokenizer) is tested in
tests/integration/test_token_fit.py; here its answers are given, so these tests pin what plan
makes of them: an error at max_seq_len's file:line:col with nothing written, a warning with
counts, one measurement per distinct combination, a cache that spares an unchanged re-plan.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.compiler import token_fit
from cruijff.compiler.pipeline import compile_manifest

MANIFEST = """\
experiment: fit
output_dir: out
models:
  tiny:
    path: model
    family: custom
    builder: {{_component_: torchtune.models.llama3.lora_llama3}}
    checkpoint_files: [model.safetensors]
    model_type: LLAMA3
datasets:
  words: {{path: words.json, format: instruct_json{generate}}}
prompt: {{system: Capitalize the word., template: "Word: {{input}}"}}
finetune:
  hyperparameters: {{epochs: 5, batch_size: 1, warmup_steps: 0, max_seq_len: 16}}
  resources: {{gpus: 0}}
grid:
{grid}
"""
LEN_AT = "14:77"  # where finetune.hyperparameters.max_seq_len's value is


def split(rows=8, empty=0, truncated=0, longest=12, name="train"):
    return {"split": name, "rows": rows, "empty": empty, "empty_rows": list(range(min(empty, 10))),
            "truncated": truncated, "longest": longest, "max_seq_len": 16}


class FakeMeasure:
    """Answers every request with the same splits; records what it was asked."""

    def __init__(self, **splits):
        self.splits = {"train": split(), "validation": split(name="validation"), **splits}
        self.calls: list[list[dict]] = []

    def __call__(self, requests):
        self.calls.append(requests)
        return {r["key"]: {"splits": {role: self.splits[role] for role in r["datasets"]}} for r in requests}


@pytest.fixture
def project(tmp_path):
    """A model folder with a tokenizer file and a dataset file (the faked measurer reads neither)."""
    (tmp_path / "model").mkdir()
    for name in ("tokenizer.json", "config.json", "model.safetensors"):
        (tmp_path / "model" / name).write_text("{}")
    rows = [{"input": f"w{i}", "output": f"W{i}"} for i in range(8)]
    (tmp_path / "words.json").write_text(json.dumps({"train": rows, "validation": rows[:2], "test": rows[:2]}))
    return tmp_path


def write(project: Path, grid="  lora_rank: [4, 8]", generate="") -> Path:
    path = project / "m.yaml"
    path.write_text(MANIFEST.format(grid=grid, generate=generate))
    return path


def plan(path: Path, fake, monkeypatch):
    monkeypatch.setattr(token_fit, "run_measure", fake)
    return CliRunner().invoke(cli, ["plan", str(path)])


def test_no_answer_token_left_is_an_error_at_max_seq_len_and_nothing_is_written(project, monkeypatch):
    fake = FakeMeasure(train=split(empty=8, truncated=8, longest=40))
    result = plan(write(project), fake, monkeypatch)
    assert result.exit_code == 2, result.output
    assert (f"m.yaml:{LEN_AT}: run 'tiny_words_r4' (and 1 more) would train on no token: with max_seq_len 16, "
            "every one of the 8 rows of the train split 'train' of dataset 'words'") in result.stderr
    assert "raise max_seq_len to 40" in result.stderr and "Traceback" not in result.output
    assert "nothing written" in result.stderr
    assert not (project / "out").exists()
    assert len(fake.calls) == 1 and len(fake.calls[0]) == 1, "two runs that differ in lora_rank share one measurement"


def test_some_rows_cut_is_a_warning_with_counts(project, monkeypatch):
    fake = FakeMeasure(train=split(empty=3, truncated=5, longest=30))
    result = plan(write(project), fake, monkeypatch)
    assert result.exit_code == 0, result.output
    assert (f"m.yaml:{LEN_AT}: warning: run 'tiny_words_r4' (and 1 more): 5 of the 8 rows of the train split "
            "'train' of dataset 'words'") in result.stderr
    assert "3 of them keep no answer token" in result.stderr and "(rows 0, 1, 2)" in result.stderr
    assert "validation" not in result.stderr  # the split that fits says nothing
    assert (project / "out" / "plan.json").is_file()


def test_the_request_is_what_finetune_yaml_renders(project, monkeypatch):
    """The measurer builds the components each run's finetune.yaml names, so its counts are training's."""
    from ruamel.yaml import YAML

    fake = FakeMeasure()
    assert plan(write(project), fake, monkeypatch).exit_code == 0
    config = YAML(typ="safe").load((project / "out" / "finetune" / "tiny_words_r4" / "finetune.yaml").read_text())
    [request] = fake.calls[0]
    assert request["tokenizer"] == config["tokenizer"]
    assert request["datasets"] == {"train": config["dataset"], "validation": config["dataset_val"]}


def test_an_unchanged_replan_measures_nothing_and_an_edit_measures_again(project, monkeypatch):
    path = write(project)
    fake = FakeMeasure(train=split(truncated=2))
    assert plan(path, fake, monkeypatch).exit_code == 0
    assert len(fake.calls) == 1 and (project / "out" / token_fit.CACHE_FILE).is_file()

    def refuse(requests):
        raise AssertionError("an unchanged re-plan started the measurement")

    again = plan(path, refuse, monkeypatch)
    assert again.exit_code == 0 and "2 of the 8 rows" in again.stderr  # the cached finding is still shown
    rows = json.loads((project / "words.json").read_text())
    rows["train"][0]["input"] = "a much longer word"
    (project / "words.json").write_text(json.dumps(rows))
    assert plan(path, fake, monkeypatch).exit_code == 0
    assert len(fake.calls) == 2, "an edited dataset must be measured again"


def test_each_max_seq_len_is_measured_once_and_blamed_at_its_grid_value(project, monkeypatch):
    fake = FakeMeasure(train=split(empty=8, truncated=8))
    grid = "  max_seq_len: [16, 512]\n  lr: [1.0e-4, 2.0e-4, 3.0e-4]"
    result = plan(write(project, grid=grid), fake, monkeypatch)
    assert result.exit_code == 2
    assert len(fake.calls[0]) == 2, "6 runs, 2 distinct max_seq_len: 2 measurements"
    assert "m.yaml:17:17: run 'tiny_words_lr1e-4_len16' (and 2 more)" in result.stderr
    assert "m.yaml:17:21: run 'tiny_words_lr1e-4_len512" in result.stderr


def test_a_measurement_that_cannot_run_is_a_warning_not_a_crash(project, monkeypatch):
    monkeypatch.setattr(token_fit, "MEASURE_MODULE", "cruijff.no_such_measure")  # the real subprocess fails
    result = CliRunner().invoke(cli, ["plan", str(write(project))])
    assert result.exit_code == 0, result.output
    assert "warning: could not measure whether the training rows fit max_seq_len: cruijff.no_such_measure " \
           "exited with 1: " in result.stderr and "No module named cruijff.no_such_measure" in result.stderr
    assert not (project / "out" / token_fit.CACHE_FILE).exists(), "a failure is not cached"


def test_a_failed_combination_says_why(project, monkeypatch):
    result = plan(write(project), lambda requests: {r["key"]: {"error": "OSError: bad tokenizer.json"}
                                                    for r in requests}, monkeypatch)
    assert result.exit_code == 0
    assert "warning: could not measure the token lengths of dataset 'words' with model 'tiny''s tokenizer: " \
           "OSError: bad tokenizer.json" in result.stderr


def test_what_is_not_here_is_not_measured(project, monkeypatch):
    def refuse(requests):
        raise AssertionError("measured something that is not reachable")

    monkeypatch.setattr(token_fit, "run_measure", refuse)
    generated = write(project, generate=", generate: {kind: capitalization, count: 20}")
    compile_manifest(generated)  # a prepare job makes the data later
    shutil.rmtree(project / "model")
    compile_manifest(write(project))  # no model folder here (it is on the cluster only)
