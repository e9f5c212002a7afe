"""Issue 25, items 5-7, through plan: `--set` overrides, save_epochs none and finetune.export, run-name
templates. What they render is pinned by the golden files of tests/golden/tiny_set and
tests/golden/tiny_trained_only (regenerate: CRUIJFF_UPDATE_GOLDEN=1, as test_compile_golden.py
says); the real run of export adapter is tests/integration/test_export_choice.py.
"""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from cruijff.cli import cli
from cruijff.compiler.pipeline import check, compile_manifest
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.compiler.source import load
from cruijff.errors import ManifestError
from cruijff.plan import EVAL, FINETUNE, plan_to_dict
from tests.unit.test_compile_golden import GOLDEN, REPO, UPDATE, machine, normalise  # noqa: F401 (fixture)

TINY = REPO / "experiments" / "tiny.yaml"
TASK = "from inspect_ai import task\n\n\n@task\ndef exact(**kwargs):\n    pass\n"

# The golden cases: the tiny experiment planned with command-line overrides.
CASES = {
    "tiny_set": ["finetune.hyperparameters.epochs=1", "eval.limit=5", "finetune.export=adapter",
                 'finetune.run_name="{model}_rank{lora_rank}_lr{lr}"', "finetune.wandb={project: caps}"],
    "tiny_trained_only": ["finetune.save_epochs=none", "grid.lora_rank=[4]"],
}


def manifest(tmp: Path, **finetune) -> Path:
    """A small manifest whose paths need not exist (plans with check_paths=False)."""
    (tmp / "tasks.py").write_text(TASK)
    m = {"experiment": "fd", "output_dir": str(tmp / "out"), "executor": {"kind": "slurm"},
         "models": {"tiny": {"path": str(tmp / "model"), "family": "custom",
                             "builder": {"_component_": "torchtune.models.llama3.lora_llama3"},
                             "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
         "datasets": {"words": {"path": str(tmp / "words.json"), "format": "instruct_json"}},
         "finetune": {"hyperparameters": {"epochs": 2, "batch_size": 2}, **finetune},
         "grid": {"lr": [1e-4, 3e-4], "lora_rank": [4, 8]},
         "eval": {"tasks": [{"name": "exact", "file": "tasks.py", "task": "exact"}]}}
    path = tmp / "m.yaml"
    path.write_text(dump_yaml(m))
    return path


def problems(path: Path, *sets: str) -> list:
    with pytest.raises(ManifestError) as e:
        check(path, check_paths=False, overrides=sets)
    return e.value.problems


# ---- goldens --------------------------------------------------------------------------------


def rendered(sets: list[str], machine) -> dict[str, str]:
    compiled = compile_manifest(TINY, check_paths=False, overrides=sets)
    files = {rel: normalise(text, machine) for rel, text in compiled.files.items()}
    plan = plan_to_dict(compiled.plan)
    plan.pop("cruijff_version")
    for node in plan["nodes"]:
        node.pop("hash")
        node["inputs"] = sorted(node["inputs"])
    files["plan.nodes.json"] = normalise(json.dumps(plan, indent=1) + "\n", machine)
    return files


@pytest.mark.parametrize("case", sorted(CASES))
def test_overridden_plans_match_golden(case, machine):
    files = rendered(CASES[case], machine)
    folder = GOLDEN / case
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        for rel, text in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        pytest.skip(f"golden files of {case} rewritten")
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(on_disk), "the plan's files changed (CRUIJFF_UPDATE_GOLDEN=1 to accept)"
    for rel, text in files.items():
        want = (folder / rel).read_text()
        if text != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), rel, "rendered"))
            pytest.fail(f"{rel} differs from its golden file (CRUIJFF_UPDATE_GOLDEN=1 to accept):\n{diff}")


def test_the_golden_overrides_render_what_they_say(machine):
    """Read back from the rendered files, not from the goldens: each override reached its file."""
    files = rendered(CASES["tiny_set"], machine)
    runs = sorted({rel.split("/")[1] for rel in files if rel.startswith("finetune/")})
    assert runs == ["tiny_rank4_lr1e-3", "tiny_rank8_lr1e-3"]
    yaml = YAML(typ="safe")
    for run in runs:
        config = yaml.load(files[f"finetune/{run}/finetune.yaml"])
        assert config["epochs"] == 1 and config["save_adapter_weights_only"] is True
        assert config["export"] == {"base_model_dir": "<REPO>/experiments/tiny/model",
                                    "adapter_template": "{output_dir}/epoch_{epoch}/adapter"}
        assert config["metric_logger"]["name"] == run  # the W&B run name
        assert f"--job-name=tiny-capitalization:finetune/{run}\n" in files[f"finetune/{run}/job.sbatch"]
        model_config = yaml.load(files[f"eval/{run}/epoch_0/capitalization/model_config.yaml"])
        assert model_config["model_path"] == f"<REPO>/experiments/tiny/out/finetune/{run}/epoch_0/adapter"
        assert "--limit 5 " in files[f"eval/{run}/epoch_0/capitalization/job.sbatch"]
    head = files["manifest.yaml"].split("experiment:")[0]
    assert "#   finetune.hyperparameters.epochs = 1   (manifest: 2)" in head
    assert "#   eval.limit = 5   (manifest: 20)" in head
    assert "#   finetune.export = \"adapter\"   (manifest: not set)" in head
    resolved = yaml.load(files["manifest.yaml"])
    assert resolved["finetune"]["hyperparameters"]["epochs"] == 1 and resolved["eval"]["limit"] == 5


def test_existing_experiments_render_no_new_key():
    """A manifest that uses none of the new fields renders as before (no export or run_name key)."""
    compiled = compile_manifest(TINY, check_paths=False)
    assert "run_name" not in compiled.files["manifest.yaml"] and "export: " not in compiled.files["manifest.yaml"]
    assert "adapter_template" not in compiled.files["finetune/tiny_words_r4/finetune.yaml"]


# ---- 5. --set -------------------------------------------------------------------------------


def test_set_values_are_yaml_data(tmp_path):
    path = manifest(tmp_path)
    m = check(path, check_paths=False, overrides=[
        "finetune.hyperparameters.lr=3e-4", "eval.limit=null", "grid.lora_rank=[16, 32]",
        "prompt.system=Answer in one word.", 'prompt.template="{input} ->"', "finetune.resources={gpus: 0, cpus: 2}",
        "eval.tasks[0].max_tokens=7", "eval.tasks.0.args={ignore_punctuation: true}"]).manifest
    assert m["finetune"]["hyperparameters"]["lr"] == 3e-4 and isinstance(m["finetune"]["hyperparameters"]["lr"], float)
    assert m["eval"]["limit"] is None and m["grid"]["lora_rank"] == [16, 32]
    assert m["prompt"]["system"] == "Answer in one word." and m["prompt"]["template"] == "{input} ->"
    assert m["finetune"]["resources"]["cpus"] == 2 and m["eval"]["tasks"][0]["max_tokens"] == 7
    assert m["eval"]["tasks"][0]["args"] == {"ignore_punctuation": True}


def test_the_last_set_of_a_key_wins(tmp_path):
    checked = check(manifest(tmp_path), check_paths=False, overrides=["eval.limit=3", "eval.limit=4"])
    assert checked.manifest["eval"]["limit"] == 4 and [o.arg for o in checked.overrides] == ["eval.limit=4"]


def test_a_bad_overridden_value_points_at_its_set(tmp_path):
    found = problems(manifest(tmp_path), "finetune.hyperparameters.epochs=abc")
    assert [(str(p.location), "epochs must be integer" in p.message) for p in found] == [
        ("--set finetune.hyperparameters.epochs=abc", True)]
    # An unknown key inside a flow mapping, and a semantic check, point at the --set too.
    [p] = problems(manifest(tmp_path), "finetune.resources={gpus: 0, gpux: 1}")
    assert str(p.location) == "--set finetune.resources={gpus: 0, gpux: 1}" and "gpux" in p.message
    [p] = problems(manifest(tmp_path), "finetune.save_epochs=[5]")
    assert str(p.location) == "--set finetune.save_epochs=[5]" and "asks for epoch 5" in p.message


@pytest.mark.parametrize("arg, message, hint", [
    ("eval.limti=3", "unknown key 'limti' in eval", "did you mean 'limit'?"),
    ("models.tny.path=/x", "models has no entry 'tny'", "did you mean 'tiny'?"),
    ("eval.tasks[2].max_tokens=3", "eval.tasks has 1 item(s); there is no item 2", "[0] to [0]"),
    ("experiment.name=x", "experiment is a value ('fd'), not a section with keys", "--set experiment="),
    ("finetune.hyperparameters.epochs", "--set needs KEY=VALUE", "eval.limit=20"),
    ("eval..limit=3", "is not a key path", "eval.tasks[0].max_tokens"),
    ("prompt.system=[oops", "the value is not valid YAML", "--set 'prompt.system=\"[oops\"'"),
])
def test_unknown_paths_and_malformed_sets_are_clear_errors(tmp_path, arg, message, hint):
    [p] = problems(manifest(tmp_path), arg)
    assert str(p.location) == f"--set {arg}" and message in p.message and hint in p.hint, p


def test_a_new_key_the_schema_knows_is_created_with_its_sections(tmp_path):
    path = manifest(tmp_path)
    m = check(path, check_paths=False, overrides=["finetune.wandb.project=caps", "cluster.partition=gpu"]).manifest
    assert m["finetune"]["wandb"] == {"project": "caps", "mode": "offline"} and m["cluster"]["partition"] == "gpu"


def test_cli_plan_validate_and_apply_take_set(tmp_path):
    path = manifest(tmp_path)
    runner = CliRunner()
    res = runner.invoke(cli, ["validate", str(path), "--set", "finetune.hyperparameters.epochs=abc", "--json"])
    assert res.exit_code == 2
    [error] = json.loads(res.output)["errors"]
    assert error["file"] == "--set finetune.hyperparameters.epochs=abc" and error["line"] is None
    res = runner.invoke(cli, ["validate", str(path), "--set", "grid.lr=[1e-4]", "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["runs"] == 2
    res = runner.invoke(cli, ["apply", str(tmp_path), "--set", "eval.limit=2"])
    assert res.exit_code != 0 and "--set overrides a manifest" in str(res.exception)


def test_replan_with_other_sets_compiles_again(tmp_path, monkeypatch):
    from cruijff.compiler import pipeline

    (tmp_path / "words.json").write_text(json.dumps(
        {s: [{"input": "a", "output": "A"}] * 40 for s in ("train", "validation", "test")}))
    path = manifest(tmp_path)
    calls = []
    real = pipeline.compile_manifest
    monkeypatch.setattr(pipeline, "compile_manifest", lambda *a, **kw: calls.append(kw) or real(*a, **kw))

    def plan(*sets):
        res = CliRunner().invoke(cli, ["plan", str(path), "--json", *[x for s in sets for x in ("--set", s)]])
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    first = plan("eval.limit=2")
    plan("eval.limit=2")
    assert len(calls) == 1, "the same --set again: nothing to compile"
    third = plan("eval.limit=3")
    assert len(calls) == 2 and third["changes"]["changed"] == 8 and first["changes"]["added"] == 12
    assert first["overrides"] == ["eval.limit = 2   (manifest: not set)"]
    assert "eval.limit = 3" in (tmp_path / "out" / "manifest.yaml").read_text()
    plan()
    assert len(calls) == 3 and "Overridden" not in (tmp_path / "out" / "manifest.yaml").read_text()


# ---- 6. save_epochs none, export ----------------------------------------------------------------


def test_save_epochs_none_trains_only_and_says_so(tmp_path):
    path = manifest(tmp_path, save_epochs="none")
    compiled = compile_manifest(path, check_paths=False)
    kinds = [n.kind for n in compiled.plan.nodes]
    assert kinds.count(FINETUNE) == 4 and EVAL not in kinds
    [warning] = [w for w in compiled.checked.warnings if "save_epochs is none" in w.message]
    assert "only trained" in warning.message and "none of them is evaluated" in warning.message
    assert (warning.location.line, warning.location.col) != (None, None)
    config = YAML(typ="safe").load(compiled.files["finetune/tiny_words_r4_lr1e-4/finetune.yaml"])
    assert config["save_epochs"] == []
    # Base models are still evaluated; an explicit eval.epochs does not contradict it.
    compiled = compile_manifest(path, check_paths=False, overrides=["eval.base_models=true", "eval.epochs=last"])
    assert sorted({n.kind for n in compiled.plan.nodes}) == ["base_eval", "finetune"]


@pytest.mark.parametrize("choice, keys, evaluated", [
    (None, ["base_model_dir", "dir_template"], "model"),
    ("merged", ["base_model_dir", "dir_template"], "model"),
    ("adapter", ["base_model_dir", "adapter_template"], "adapter"),
    ("both", ["base_model_dir", "dir_template", "adapter_template"], "model"),
])
def test_export_choice_renders_the_recipes_export_and_what_is_evaluated(tmp_path, choice, keys, evaluated):
    path = manifest(tmp_path, **({"export": choice} if choice else {}))
    files = compile_manifest(path, check_paths=False).files
    run = "tiny_words_r4_lr1e-4"
    config = YAML(typ="safe").load(files[f"finetune/{run}/finetune.yaml"])
    assert list(config["export"]) == keys and config["save_adapter_weights_only"] is True
    model_config = YAML(typ="safe").load(files[f"eval/{run}/epoch_1/exact/model_config.yaml"])
    assert model_config["model_path"] == f"{tmp_path}/out/finetune/{run}/epoch_1/{evaluated}"
    assert model_config["tokenizer_path"] == model_config["model_path"]


def test_export_adapter_with_vllm_is_refused_at_export(tmp_path):
    path = manifest(tmp_path, export="adapter")
    [p] = problems(path, "eval.provider=vllm")
    assert "PEFT" in p.message and p.location == load(path).locate(["finetune", "export"])
    check(path, check_paths=False, overrides=["eval.provider=vllm", "finetune.export=both"])


def test_recipe_settings_read_the_export_block():
    from omegaconf import OmegaConf

    from cruijff.train.hooks import RecipeConfigError, Settings

    cfg = OmegaConf.create({"epochs": 2, "export": {"base_model_dir": "/b", "adapter_template": "{output_dir}/a"}})
    s = Settings.from_cfg(cfg)
    assert (s.export_template, s.adapter_template, s.export_base) == (None, "{output_dir}/a", "/b")
    with pytest.raises(RecipeConfigError):
        Settings.from_cfg(OmegaConf.create({"epochs": 2, "export": {"base_model_dir": "/b"}}))
    assert Settings.from_cfg(OmegaConf.create({"epochs": 2, "save_epochs": []})).saves(0) is False


# ---- 7. run names -----------------------------------------------------------------------------


def test_run_name_template_names_runs_dirs_and_jobs(tmp_path):
    path = manifest(tmp_path, run_name="{model}_r{lora_rank}_lr{lr}_bs{batch_size}", wandb={"project": "p"})
    compiled = compile_manifest(path, check_paths=False)
    runs = [n.attrs["run"] for n in compiled.plan.nodes if n.kind == FINETUNE]
    assert runs == ["tiny_r4_lr1e-4_bs2", "tiny_r8_lr1e-4_bs2", "tiny_r4_lr3e-4_bs2", "tiny_r8_lr3e-4_bs2"]
    run = runs[0]
    assert f"eval/{run}/epoch_1/exact" in [n.id for n in compiled.plan.nodes]
    config = YAML(typ="safe").load(compiled.files[f"finetune/{run}/finetune.yaml"])
    assert config["output_dir"] == f"{tmp_path}/out/finetune/{run}" and config["metric_logger"]["name"] == run
    assert f"#SBATCH --job-name=fd:finetune/{run}\n" in compiled.files[f"finetune/{run}/job.sbatch"]
    # A format spec, and a fixed (not swept) value.
    compiled = compile_manifest(path, check_paths=False, overrides=['finetune.run_name="lr{lr:.1e}-r{lora_rank}"'])
    assert [n.attrs["run"] for n in compiled.plan.nodes if n.kind == FINETUNE][0] == "lr1.0e-04-r4"


@pytest.mark.parametrize("template, message, hint", [
    ("{model}_r{lora_rank}", "gives runs 'tiny_words_r4_lr1e-4' and 'tiny_words_r4_lr3e-4' the same name 'tiny_r4'", "{lr}"),
    ("{model}/{lr}_{lora_rank}", "holds '/'", "fields: {model}, {dataset}"),
    ("{model}_{rank}", "unknown field {rank}", "{lora_rank}"),
    ("run", "has no {field}", "fields:"),
    ("{model", "is not a valid template", "fields:"),
    ("{lr:d}", "cannot format run", "fields:"),
])
def test_run_name_problems_point_at_the_template(tmp_path, template, message, hint):
    path = manifest(tmp_path, run_name=template)
    found = problems(path)
    assert all(p.location == load(path).locate(["finetune", "run_name"]) for p in found), found
    assert any(message in p.message and hint in (p.hint or "") for p in found), found
    # Through --set, the same problem points at the --set.
    found = problems(manifest(tmp_path), f"finetune.run_name={json.dumps(template)}")
    assert {str(p.location) for p in found} == {f"finetune.run_name={json.dumps(template)}".join(("--set ", ""))}


# ---- cruijff import: cruijff_kit's save choices and run names ----------------------------------

DESIGN = """\
experiment: {{name: saves, question: adapters only?, dir: out}}
controls: {{prompt: "{{input}}", epochs: 2, {controls}}}
models: {{base: [{{name: Llama-3.2-1B-Instruct, path: /models/Llama-3.2-1B-Instruct, size_gb: 2.5}}]}}
data: {{training: {{path: words.json, dataset_label: words, format: json}}}}
variables: {{lora_rank: [4, 8]}}
runs:
  - {{name: {a}, type: fine-tuned, model: Llama-3.2-1B-Instruct, parameters: {{lora_rank: 4}}}}
  - {{name: {b}, type: fine-tuned, model: Llama-3.2-1B-Instruct, parameters: {{lora_rank: 8}}}}
evaluation:
  tasks: [{{name: cap, script: cap.py, dataset: same}}]
  matrix: [{{run: {a}, tasks: [cap], epochs: [1]}}, {{run: {b}, tasks: [cap], epochs: [1]}}]
"""


def imported(tmp_path: Path, controls: str, a: str = "Llama-3.2-1B-Instruct_rank4",
             b: str = "Llama-3.2-1B-Instruct_rank8"):
    from cruijff.compiler.kit_import import render, translate

    (tmp_path / "cap.py").write_text("from inspect_ai import task\n\n\n@task\ndef cap(**kwargs):\n    ...\n")
    summary = tmp_path / "experiment_summary.yaml"
    summary.write_text(DESIGN.format(controls=controls, a=a, b=b))
    result = translate(load(summary))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(render(result, summary.name))
    return result, compile_manifest(manifest, check_paths=False)


def test_import_maps_save_adapter_weights_only_and_epochs_to_save(tmp_path):
    result, compiled = imported(tmp_path, "save_adapter_weights_only: 'true', epochs_to_save: '1'")
    assert result.manifest["finetune"]["export"] == "adapter" and result.manifest["finetune"]["save_epochs"] == [1]
    assert not any("save_adapter_weights_only" in n or "epochs_to_save" in n for n in result.notes)
    run = "Llama-3.2-1B-Instruct_rank4"
    config = YAML(typ="safe").load(compiled.files[f"finetune/{run}/finetune.yaml"])
    assert config["save_epochs"] == [1] and "adapter_template" in config["export"] and "dir_template" not in config["export"]
    model_config = YAML(typ="safe").load(compiled.files[f"eval/{run}/epoch_1/cap/model_config.yaml"])
    assert model_config["model_path"].endswith(f"finetune/{run}/epoch_1/adapter")

    result, compiled = imported(tmp_path, "save_adapter_weights_only: false, epochs_to_save: none")
    assert "export" not in result.manifest["finetune"] and result.manifest["finetune"]["save_epochs"] == "none"
    assert not [n for n in compiled.plan.nodes if n.kind == EVAL]
    result, _ = imported(tmp_path, "save_last_epoch_only: 'true'")
    assert result.manifest["finetune"]["save_epochs"] == "last"
    with pytest.raises(ManifestError) as e:
        imported(tmp_path, "save_adapter_weights_only: maybe")
    assert "controls.save_adapter_weights_only" in e.value.problems[0].message


def test_import_keeps_cruijff_kits_run_names_when_one_template_gives_them(tmp_path):
    result, compiled = imported(tmp_path, "batch_size: 4")
    assert result.manifest["finetune"]["run_name"] == "{model}_rank{lora_rank}"
    assert result.runs == {n: n for n in ("Llama-3.2-1B-Instruct_rank4", "Llama-3.2-1B-Instruct_rank8")}
    assert sorted(n.attrs["run"] for n in compiled.plan.nodes if n.kind == FINETUNE) == sorted(result.runs)
    # Names no template gives (a label per run): cruijff's own names, mapped in the header.
    result, compiled = imported(tmp_path, "batch_size: 4", a="small", b="big")
    assert "run_name" not in result.manifest["finetune"]
    assert result.runs == {"small": "Llama-3.2-1B-Instruct_words_r4", "big": "Llama-3.2-1B-Instruct_words_r8"}
    assert sorted(n.attrs["run"] for n in compiled.plan.nodes if n.kind == FINETUNE) == sorted(result.runs.values())


def test_the_shipped_capitalization_import_keeps_its_run_names():
    from cruijff.compiler.kit_import import translate

    result = translate(load(REPO / "experiments" / "imported" / "capitalization.summary.yaml"))
    assert result.manifest["finetune"]["run_name"] == "{model}_rank{lora_rank}_lr{lr}"
    assert all(kit == ours for kit, ours in result.runs.items()) and len(result.runs) == 4


def test_many_collisions_are_counted_not_listed(tmp_path):
    path = manifest(tmp_path, run_name="{model}")
    found = problems(path, "grid.lr=[1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4]")
    assert len(found) == 4 and "gives 8 more run(s) a name another run has" in found[-1].message
