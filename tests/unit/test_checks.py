"""Semantic checks and resolution: what the schema cannot say, each at its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from cruijff.checks import resolve_epochs
from cruijff.compile import check
from cruijff.errors import ManifestError
from cruijff.render.yaml import dump_yaml

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "manifests" / "data"


def base(**over) -> dict:
    m = {
        "experiment": "checks",
        "output_dir": "out",
        "models": {"tiny": {"path": "model", "family": "custom",
                            "builder": {"_component_": "torchtune.models.llama3.lora_llama3"},
                            "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
        "datasets": {"words": {"path": str(DATA / "words.json"), "format": "instruct_json"}},
        "finetune": {"hyperparameters": {"epochs": 3}, "resources": {"gpus": 0}},
    }
    m.update(over)
    return m


def run_check(tmp_path, m, env=None):
    path = tmp_path / "m.yaml"
    path.write_text(dump_yaml(m))
    return check(path, env=env if env is not None else {})


def errors(tmp_path, m, env=None) -> list[str]:
    with pytest.raises(ManifestError) as info:
        run_check(tmp_path, m, env)
    return [str(p) for p in info.value.problems]


def test_resolve_epochs():
    assert resolve_epochs("last", 3) == [2]
    assert resolve_epochs("all", 3) == [0, 1, 2]
    assert resolve_epochs("all", 3, saved=[0, 2]) == [0, 2]
    assert resolve_epochs([2, 0], 3) == [0, 2]


def test_defaults_and_paths_are_resolved(tmp_path):
    checked = run_check(tmp_path, base(output_dir="${WORK}/x/../out"), env={"WORK": "/w"})
    m = checked.manifest
    assert m["output_dir"] == "/w/out"
    assert m["models"]["tiny"]["path"] == str(tmp_path / "model")  # relative to the manifest's folder
    assert m["finetune"]["save_epochs"] == "last"
    assert m["finetune"]["hyperparameters"]["lora_rank"] == 8 and m["finetune"]["hyperparameters"]["epochs"] == 3
    assert m["datasets"]["words"]["splits"] == {"train": "train", "validation": "validation", "test": "test"}
    assert m["executor"] == {"kind": "auto", "max_parallel": 1}
    assert [r.name for r in checked.runs] == ["tiny_words"]


def test_save_all_and_evaluate_last(tmp_path):
    m = base(finetune={"hyperparameters": {"epochs": 3}, "save_epochs": [0, 2], "resources": {"gpus": 0}},
             eval={"tasks": [{"name": "t", "file": "t.py", "task": "t"}], "epochs": "last"})
    assert run_check(tmp_path, m).runs


def test_grid_epochs_make_save_epochs_per_run(tmp_path):
    m = base(finetune={"save_epochs": [2], "resources": {"gpus": 0}}, grid={"epochs": [2, 3]})
    (msg,) = errors(tmp_path, m)
    assert "asks for epoch 2, but run 'tiny_words_ep2' trains 2 epoch(s)" in msg


def test_registry_keys_on_a_registry_model(tmp_path):
    m = base(models={"llama": {"path": "/m", "family": "Llama-3.2-1B", "checkpoint_files": ["x"]}})
    (msg,) = errors(tmp_path, m)
    assert "'checkpoint_files' is only for family custom" in msg


def test_gpus_from_the_model_beat_finetune_resources(tmp_path):
    m = base(models={"big": {"path": "/m", "family": "Llama-3.3-70B-Instruct"}},
             finetune={"resources": {"gpus": 2}})
    (msg,) = errors(tmp_path, m)
    assert "needs at least 4 GPUs, but 2 are requested" in msg
    m["models"]["big"]["resources"] = {"gpus": 8}
    assert run_check(tmp_path, m).runs
    m["finetune"]["resources"] = {"gpus": 0}  # CPU runs are the user's call
    m["models"]["big"].pop("resources")
    assert run_check(tmp_path, m).runs


def test_base_models_must_be_declared(tmp_path):
    m = base(eval={"tasks": [{"name": "t", "file": "t.py", "task": "t"}], "base_models": ["tinny"]})
    (msg,) = errors(tmp_path, m)
    assert "eval.base_models names 'tinny'" in msg and "did you mean 'tiny'" in msg


def test_a_custom_tokenizer_only_warns(tmp_path):
    m = base()
    m["models"]["tiny"]["tokenizer"] = {"_component_": "torchtune.models.qwen2.qwen2_tokenizer", "path": "v.json"}
    checked = run_check(tmp_path, m)
    assert [w.severity for w in checked.warnings] == ["warning"]
    assert "'tokenizer' is ignored" in checked.warnings[0].message and "parity" in checked.warnings[0].hint


def test_unreachable_files_only_warn(tmp_path):
    m = base(datasets={"words": {"path": "/nowhere/words.json", "format": "instruct_json"}},
             eval={"tasks": [{"name": "t", "file": "/nowhere/t.py", "task": "t"}]})
    checked = run_check(tmp_path, m)
    assert len(checked.warnings) == 2 and all(w.severity == "warning" for w in checked.warnings)


def test_broken_dataset_file_is_an_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    m = base(datasets={"words": {"path": str(bad), "format": "instruct_json"}})
    (msg,) = errors(tmp_path, m)
    assert "dataset 'words'" in msg


def test_split_set_to_null_is_not_required(tmp_path):
    m = base(datasets={"words": {"path": str(DATA / "no_test.json"), "format": "instruct_json",
                                 "splits": {"test": None}}})
    assert run_check(tmp_path, m).runs


def test_exclude_removing_everything(tmp_path):
    m = base(grid={"lora_rank": [4], "exclude": [{"lora_rank": 4}]})
    (msg,) = errors(tmp_path, m)
    assert "no runs left" in msg


def test_check_paths_false_skips_file_checks(tmp_path):
    m = base(datasets={"words": {"path": str(DATA / "no_test.json"), "format": "instruct_json"}})
    path = tmp_path / "m.yaml"
    path.write_text(dump_yaml(m))
    with pytest.raises(ManifestError):
        check(path, env={})
    assert check(path, env={}, check_paths=False).runs
