"""Re-planning: node hashes cover the files a job reads, and `plan` says which settings changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cruijff.compiler import inputs
from cruijff.cli import cli
from cruijff.compiler.pipeline import compile_manifest
from cruijff.plan import FINETUNE, PREPARE
from cruijff.paths import recipes_dir
from tests.helpers_models import stand_in_model
from cruijff.compiler.render.yaml import dump_yaml

DATA = Path(__file__).resolve().parents[1] / "fixtures" / "manifests" / "data" / "words.json"
TASK = """from inspect_ai import task


@task
def t(data, format="instruct_json", split="test", template=None, system=None):
    return None
"""


def manifest(tmp: Path, **over) -> Path:
    shutil.copy(DATA, tmp / "words.json")
    if not (tmp / "t.py").exists():
        (tmp / "t.py").write_text(TASK)
    stand_in_model(tmp / "model")
    m = {
        "experiment": "changes", "output_dir": "out", "executor": {"kind": "local"},
        "models": {"tiny": {"path": "model", "family": "custom",
                            "builder": {"_component_": "torchtune.models.llama3.lora_llama3"},
                            "tokenizer": {"_component_": "torchtune.models.qwen2.qwen2_tokenizer", "path": "v.json"},
                            "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
        "datasets": {"words": {"path": "words.json", "format": "instruct_json"}},
        "finetune": {"hyperparameters": {"epochs": 1, "lr": 1.0e-3}, "resources": {"gpus": 0}},
        "grid": {"lora_rank": [4, 8]},
        "eval": {"tasks": [{"name": "t", "file": "t.py", "task": "t"}], "base_models": True},
    }
    m.update(over)
    path = tmp / "m.yaml"
    path.write_text(dump_yaml(m))
    return path


def hashes(path: Path, **kw) -> dict[str, str]:
    return {n.id: n.hash for n in compile_manifest(path, env={}, **kw).plan.nodes}


def changed(a: dict[str, str], b: dict[str, str]) -> set[str]:
    return {i for i in b if a.get(i) != b[i]}


def test_editing_the_task_file_changes_the_evaluations_only(tmp_path):
    path = manifest(tmp_path)
    before = hashes(path)
    (tmp_path / "t.py").write_text(TASK.replace('split="test"', 'split="test2"'))
    assert changed(before, hashes(path)) == {i for i in before if i.startswith(("eval/", "base_eval/"))}


def test_editing_the_dataset_changes_everything_that_reads_it(tmp_path):
    path = manifest(tmp_path)
    before = hashes(path)
    data = json.loads((tmp_path / "words.json").read_text())
    data["train"][0]["output"] = "Apple"
    (tmp_path / "words.json").write_text(json.dumps(data))
    assert changed(before, hashes(path)) == set(before)


def test_big_files_are_fingerprinted_by_size_and_mtime(tmp_path, monkeypatch):
    path = manifest(tmp_path)
    monkeypatch.setattr(inputs, "BIG_FILE", 10)
    data = tmp_path / "words.json"
    before = hashes(path)
    st = data.stat()
    text = data.read_text()
    data.write_text(text.replace("apple", "APPLE"))  # same size, same mtime: not read, not seen
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert hashes(path) == before
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert {i for i in changed(before, hashes(path)) if i.startswith(FINETUNE)} == \
        {i for i in before if i.startswith(FINETUNE)}


def test_editing_the_recipe_changes_the_finetunes(tmp_path):
    path = manifest(tmp_path)
    recipes = tmp_path / "recipes"
    shutil.copytree(recipes_dir(), recipes)
    before = hashes(path, recipes=str(recipes))
    single = recipes / "lora_finetune_single_device.py"
    single.write_text(single.read_text() + "\n# edited\n")
    after = hashes(path, recipes=str(recipes))
    # the fine-tunes and, through their hashes, their evaluations; never the base-model evaluations
    assert changed(before, after) == {i for i in before if not i.startswith("base_eval/")}


def test_a_generated_dataset_is_hashed_by_its_generator(tmp_path):
    gen = {"words": {"path": "gen.json", "format": "instruct_json",
                     "generate": {"kind": "capitalization", "count": 30, "letters": 5, "seed": 1}}}
    path = manifest(tmp_path, datasets=gen)
    before = hashes(path)  # gen.json does not exist: no fingerprint of it
    (tmp_path / "gen.json").write_text("{}")  # the prepare job wrote it: nothing changes
    assert hashes(path) == before
    gen["words"]["generate"]["seed"] = 2
    path = manifest(tmp_path, datasets=gen)
    assert changed(before, hashes(path)) == set(before)


def test_code_fingerprints_follow_what_each_kind_runs(tmp_path, monkeypatch):
    fake = tmp_path / "pkg"
    for rel in ("train/a.py", "data/b.py", "tasks/c.py", "prompting.py", "scores.py", "results/scores.py",
                "results/eval_resume.py", "status.py"):
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text("x = 1\n")
    monkeypatch.setattr(inputs, "_PACKAGE", fake)

    def digests() -> dict[str, str]:
        inputs.code_digest.cache_clear()
        return {k: inputs.code_digest(k) for k in inputs.CODE}

    first = digests()
    (fake / "status.py").write_text("x = 2\n")
    assert digests() == first  # status is not run by any job
    (fake / "train" / "a.py").write_text("x = 2\n")
    second = digests()
    assert second[FINETUNE] != first[FINETUNE] and second[PREPARE] == first[PREPARE]
    inputs.code_digest.cache_clear()


def plan(path: Path, *args: str):
    result = CliRunner().invoke(cli, ["plan", str(path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_plan_names_the_changed_nodes_and_settings(tmp_path):
    path = manifest(tmp_path)
    plan(path)
    path = manifest(tmp_path, finetune={"hyperparameters": {"epochs": 1, "lr": 2.0e-3},
                                        "resources": {"gpus": 0, "mem": "6G"}})
    out = plan(path)
    # counts alone ("4 changed") were the bug; each change now gets a line saying what changed
    line = next(l for l in out.splitlines() if "~ finetune/" in l)
    assert "(+1 more)" in line and "optimizer.lr: 0.001 → 0.002" in line and "resources.mem: 32G → 6G" in line
    assert any("~ eval/" in l and "a parent changed" in l for l in out.splitlines())
    (tmp_path / "t.py").write_text(TASK + "\n# edited\n")
    out = plan(path)
    (line,) = [l for l in out.splitlines() if "~ " in l]  # two evaluations and the base evaluation
    assert "(+2 more): task file changed" in line


def test_plan_json_lists_every_changed_setting(tmp_path):
    path = manifest(tmp_path)
    plan(path)
    path = manifest(tmp_path, prompt={"system": "Be brief."})
    data = json.loads(plan(path, "--json"))
    settings = data["diff"]["settings"]
    assert set(settings) == set(data["diff"]["changed"])
    ft = settings["finetune/tiny_words_r4"]
    assert {"setting": "finetune.yaml:dataset.system", "old": "null", "new": "Be brief."} in ft
    base = settings["base_eval/tiny/words/t"]
    assert {"setting": "task_config.yaml:system", "old": "null", "new": "Be brief."} in base


def test_a_cluster_edit_shows_the_job_script_line(tmp_path):
    path = manifest(tmp_path)
    plan(path)
    path = manifest(tmp_path, cluster={"partition": "gpu"})
    out = plan(path)
    lines = [l for l in out.splitlines() if "~ " in l]
    assert lines and all("job.sbatch: +#SBATCH --partition=gpu" in l for l in lines)
