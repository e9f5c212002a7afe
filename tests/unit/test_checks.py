"""Semantic checks and resolution: what the schema cannot say, each at its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from cruijff.compiler.checks import resolve_epochs
from cruijff.compiler.pipeline import check
from cruijff.errors import ManifestError
from cruijff.compiler.render.yaml import dump_yaml
from tests.helpers_models import stand_in_model

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


GOOD_TASK = """from inspect_ai import task


@task
def t(data, format="instruct_json", split="test", template=None, system=None):
    return None
"""


def run_check(tmp_path, m, env=None):
    if not (tmp_path / "t.py").exists():
        (tmp_path / "t.py").write_text(GOOD_TASK)
    stand_in_model(tmp_path / "model")
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
    assert m["finetune"]["save_epochs"] == "all"
    assert m["finetune"]["hyperparameters"]["lora_rank"] == 64 and m["finetune"]["hyperparameters"]["epochs"] == 3
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
    (w,) = [w for w in checked.warnings if "tokenizer" in w.message]
    assert w.severity == "warning" and "'tokenizer' is ignored" in w.message and "parity" in w.hint


def test_unreachable_dataset_only_warns(tmp_path):
    m = base(datasets={"words": {"path": "/nowhere/words.json", "format": "instruct_json"}},
             eval={"tasks": [{"name": "t", "file": "t.py", "task": "t"}]})
    checked = run_check(tmp_path, m)
    assert len(checked.warnings) == 1 and all(w.severity == "warning" for w in checked.warnings)


def with_task(task="t", file="t.py", **extra) -> dict:
    return base(eval={"tasks": [{"name": "ev", "file": file, "task": task, **extra}]})


def test_missing_task_file_is_an_error(tmp_path):
    (msg,) = errors(tmp_path, with_task(file=str(tmp_path / "tt.py")))
    assert f"eval task file {tmp_path / 'tt.py'} does not exist" in msg and "m.yaml:" in msg


def test_a_task_file_whose_folder_is_not_here_warns_on_a_cluster_and_is_an_error_locally(tmp_path):
    """As for datasets: it may live on the cluster only (issue 23, items 2 and 4)."""
    m = with_task(file="/nowhere/t.py")
    (w,) = [w for w in run_check(tmp_path, m).warnings if "task file" in w.message]
    assert "/nowhere/t.py is not reachable from here; checked when the job starts" in w.message
    (msg,) = errors(tmp_path, {**m, "executor": {"kind": "local"}})
    assert "eval task 'ev': task file /nowhere/t.py does not exist" in msg and "executor: local" in msg


def test_misspelt_task_function(tmp_path):
    (msg,) = errors(tmp_path, with_task(task="tt"))
    assert "defines no function 'tt'" in msg and "did you mean 't'" in msg


@pytest.mark.parametrize("source, want, at", [
    # inspect drops template and system without a word: the evaluation would lose the training prompt
    ('@task\ndef stance(data, split="test"):\n    pass\n', "does not take format, template, system", "task"),
    ('@task\ndef stance(data, format, split, template, system, labels):\n    pass\n', "needs labels", "task"),
    ('def stance(**kwargs):\n    pass\n', "is not decorated with @task", "task"),
    ('def broken(:\n', "Python syntax error", "file"),
])
def test_task_signature_is_checked_without_importing(tmp_path, source, want, at):
    (tmp_path / "stance.py").write_text("import sys\nsys.exit('imported!')\nfrom inspect_ai import task\n" + source)
    (msg,) = errors(tmp_path, with_task(task="stance", file="stance.py"))
    assert want in msg
    text = (tmp_path / "m.yaml").read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if t.strip().startswith(f"{at}: stance"))  # eval.tasks[0].task/file
    assert msg.startswith(f"{tmp_path / 'm.yaml'}:{line}:")


@pytest.mark.parametrize("source", [
    '@task\ndef stance(**kwargs):\n    pass\n',
    '@task()\nasync def stance(data, format, split, template=None, system=None, *, labels="ab"):\n    pass\n',
    'from inspect_ai import task as inspect_task\n@inspect_task\ndef stance(data, format, split, template, system):\n    pass\n',
    'from elsewhere import stance\n',
])
def test_good_task_signatures(tmp_path, source):
    (tmp_path / "stance.py").write_text("from inspect_ai import task\n" + source)
    assert run_check(tmp_path, with_task(task="stance", file="stance.py")).runs


def test_task_args_must_be_accepted(tmp_path):
    (msg,) = errors(tmp_path, with_task(args={"labels": "ab"}))
    assert "does not take labels" in msg


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


def rows_file(tmp_path, n: int) -> str:
    import json

    path = tmp_path / f"rows{n}.json"
    row = {"input": "a", "output": "A"}
    path.write_text(json.dumps({"train": [row] * n, "validation": [row], "test": [row]}))
    return str(path)


def step_warnings(checked) -> list[str]:
    return [str(w) for w in checked.warnings if "optimizer step" in w.message]


def test_few_optimizer_steps_warn_with_the_arithmetic(tmp_path):
    # 40 rows / (batch 4 × accumulation 2) = 5 steps per epoch, × 1 epoch: below 10
    m = base(datasets={"words": {"path": rows_file(tmp_path, 40), "format": "instruct_json"}},
             finetune={"hyperparameters": {"epochs": 1, "batch_size": 4, "gradient_accumulation_steps": 2, "warmup_steps": 0},
                       "resources": {"gpus": 0}}, grid={"seed": [1, 2]})
    (msg,) = step_warnings(run_check(tmp_path, m))
    assert "run 'tiny_words_seed1' (and 1 more) makes only 5 optimizer step(s)" in msg
    assert "40 training rows of 'words'" in msg and "batch_size 4 × gradient_accumulation_steps 2" in msg
    m["finetune"]["hyperparameters"]["epochs"] = 2  # 10 steps: fine
    assert not step_warnings(run_check(tmp_path, m))


def test_fewer_rows_than_a_batch_train_nothing(tmp_path):
    m = base(datasets={"words": {"path": rows_file(tmp_path, 3), "format": "instruct_json"}},
             finetune={"hyperparameters": {"batch_size": 4}, "resources": {"gpus": 0}})
    (msg,) = step_warnings(run_check(tmp_path, m))
    assert "would make no optimizer step" in msg and "= 0" in msg
    line = next(i for i, t in enumerate((tmp_path / "m.yaml").read_text().splitlines(), 1) if "batch_size" in t)
    assert msg.startswith(f"{tmp_path / 'm.yaml'}:{line}:")


def test_warmup_longer_than_the_run_warns(tmp_path):
    m = base(datasets={"words": {"path": rows_file(tmp_path, 400), "format": "instruct_json"}},
             finetune={"hyperparameters": {"epochs": 1, "batch_size": 4, "warmup_steps": 200},
                       "resources": {"gpus": 0}})
    (msg,) = [str(w) for w in run_check(tmp_path, m).warnings]
    assert "warmup_steps 200 ≥ its 100 optimizer step(s)" in msg


def test_include_values_are_held_to_the_same_types(tmp_path):
    m = base(grid={"lora_rank": [4], "include": [{"lora_rank": 4, "epochs": 2.0}]})
    (msg,) = errors(tmp_path, m)
    assert "grid.include[0].epochs: 2.0 is not of type 'integer'" in msg
