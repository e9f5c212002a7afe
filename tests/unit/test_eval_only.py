"""Evaluating what a plan did not train (issue 25, items 4 and 8), through plan:

- a model entry with `checkpoint:` (a merged model or PEFT adapter folder fine-tuned elsewhere,
  cruijff_kit's eval-only runs) is evaluated by `checkpoint_eval` nodes and never fine-tuned;
- cruijff_kit's task interface (data_path, config_path → eval.yaml with prompt and system_prompt,
  vis_label, use_chat_template) is recognised from the task file's syntax tree and fed what it reads;
- `cruijff eval CHECKPOINT` builds a one-model manifest (the prompt of an epoch folder's run).

The rendered files of tests/fixtures/manifests/valid/eval_only.yaml are pinned in
tests/golden/eval_only (CRUIJFF_UPDATE_GOLDEN=1 rewrites them). Real `inspect eval` runs of both are
in tests/integration/test_eval_only_inspect.py.
"""

from __future__ import annotations

import difflib
from collections import Counter
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from cruijff.compiler.pipeline import compile_manifest
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.errors import ManifestError
from cruijff.plan import CHECKPOINT_EVAL, EVAL, FINETUNE
from tests.helpers_models import stand_in_model
from tests.unit.test_checks import base, errors, run_check

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "manifests" / "valid" / "eval_only.yaml"
KIT_TASK = REPO / "tests" / "fixtures" / "cruijff_kit" / "capitalization_inspect_task.py"
GOLDEN = REPO / "tests" / "golden" / "eval_only"
UPDATE = os.environ.get("CRUIJFF_UPDATE_GOLDEN", "") not in ("", "0")


def _load(text: str):
    return YAML(typ="safe").load(text)


# --- golden files --------------------------------------------------------------------------------

def test_rendered_eval_only_files_match_golden(tmp_path):
    out = tmp_path / "plan"
    compiled = compile_manifest(FIXTURE, out=str(out))
    files = {rel: text.replace(str(out), "<OUT>").replace(str(REPO), "<REPO>") for rel, text in compiled.files.items()
             if rel.startswith(CHECKPOINT_EVAL) or "/kit/" in rel}
    if UPDATE:
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, text in files.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(text)
        pytest.skip("golden files of eval_only rewritten")
    on_disk = {str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*") if p.is_file()}
    assert sorted(files) == sorted(on_disk), "the plan's files changed (CRUIJFF_UPDATE_GOLDEN=1 to accept)"
    for rel, text in files.items():
        want = (GOLDEN / rel).read_text()
        if text != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), rel, "rendered"))
            pytest.fail(f"{rel} differs from its golden file (CRUIJFF_UPDATE_GOLDEN=1 to accept):\n{diff}")


# --- checkpoint models ---------------------------------------------------------------------------

def test_a_checkpoint_model_is_evaluated_and_never_fine_tuned(tmp_path):
    compiled = compile_manifest(FIXTURE, out=str(tmp_path / "plan"))
    kinds = {n.id: n.kind for n in compiled.plan.nodes}
    assert [i for i, k in kinds.items() if k == FINETUNE] == ["finetune/tiny_words"]
    ckpt = {i for i, k in kinds.items() if k == CHECKPOINT_EVAL}
    assert ckpt == {"checkpoint_eval/earlier_r8/words/exact", "checkpoint_eval/earlier_r8/words/kit"}
    node = next(n for n in compiled.plan.nodes if n.id == "checkpoint_eval/earlier_r8/words/exact")
    assert node.parents == () and node.attrs["checkpoint"] == "/checkpoints/earlier/finetune/r8/epoch_1/model"
    assert node.resources.gpus == 1 and node.resources.time == "00:30:00"  # the family's evaluation resources
    config = _load(compiled.files[f"{node.id}/model_config.yaml"])
    assert config["model_path"] == config["tokenizer_path"] == "/checkpoints/earlier/finetune/r8/epoch_1/model"
    assert config["tokenizer_call_args"] == {"add_special_tokens": False}  # the same prompt rules as a run's
    # the same task arguments (prompt) as the fine-tuned run's evaluation of the same task
    assert compiled.files[f"{node.id}/task_config.yaml"] == compiled.files["eval/tiny_words/epoch_0/exact/task_config.yaml"]
    script = compiled.files[f"{node.id}/job.sbatch"]
    assert ("python -m cruijff.preflight model earlier_r8 /checkpoints/earlier/finetune/r8/epoch_1/model "
            "--any config.json adapter_config.json") in script  # not visible here: the job checks it first


def test_an_evaluation_only_manifest_plans_no_fine_tune(tmp_path):
    ckpt = stand_in_model(tmp_path / "ckpt")
    m = base(models={"old": {"checkpoint": str(ckpt), "family": "custom"}},
             eval={"tasks": [{"name": "ev", "file": "t.py", "task": "t"}]})
    checked = run_check(tmp_path, m)
    assert checked.runs == []
    (tmp_path / "m.yaml").write_text(dump_yaml(m))
    compiled = compile_manifest(tmp_path / "m.yaml")
    assert [n.id for n in compiled.plan.nodes] == ["checkpoint_eval/old/words/ev"]
    assert "cruijff.preflight" not in compiled.files["checkpoint_eval/old/words/ev/job.sbatch"]  # checked at plan


def test_an_eval_matrix_selects_a_checkpoints_cells_by_base_model_rows(tmp_path):
    """With eval.matrix a checkpoint is evaluated as its `base_model` rows say (as a base model is),
    and not at all without one; without a matrix every task runs on it."""
    ckpt = stand_in_model(tmp_path / "ckpt")
    tasks = [{"name": "ev", "file": "t.py", "task": "t"}, {"name": "other", "file": "t.py", "task": "t"}]
    models = {"tiny": TINY, "old": {"checkpoint": str(ckpt), "family": "custom"}, "older": {**OLD, "checkpoint": str(ckpt)}}

    def checkpoint_cells(**eval_):
        m = base(models=models, eval={"tasks": tasks, **eval_})
        run_check(tmp_path, m)
        compiled = compile_manifest(tmp_path / "m.yaml")
        return sorted(n.id for n in compiled.plan.nodes if n.kind == CHECKPOINT_EVAL)

    assert checkpoint_cells() == ["checkpoint_eval/old/words/ev", "checkpoint_eval/old/words/other",
                                  "checkpoint_eval/older/words/ev", "checkpoint_eval/older/words/other"]
    assert checkpoint_cells(matrix=[{}, {"base_model": "old", "tasks": ["other"]}]) == ["checkpoint_eval/old/words/other"]


OLD = {"checkpoint": "ckpt", "family": "custom"}
TINY = base()["models"]["tiny"]


@pytest.mark.parametrize("models, grid, eval_, want", [
    ({"old": {"family": "custom"}}, None, True, "model 'old' needs path (a base model to fine-tune) or checkpoint"),
    ({"old": {**OLD, "path": "model"}}, None, True, "gives both path and checkpoint"),
    ({"old": OLD}, {"lora_rank": [4, 8]}, True, "grid sweeps lora_rank, but every model is an existing checkpoint"),
    ({"old": OLD}, None, False, "nothing to run"),
    ({"tiny": TINY, "old": OLD}, {"model": ["old"]}, True,
     "grid.model names 'old', an existing checkpoint (models.old.checkpoint): it is evaluated only"),
])
def test_checkpoint_models_are_refused_where_they_cannot_be(tmp_path, models, grid, eval_, want):
    stand_in_model(tmp_path / "ckpt")
    m = base(models=models)
    if grid:
        m["grid"] = grid
    if eval_:
        m["eval"] = {"tasks": [{"name": "ev", "file": "t.py", "task": "t"}]}
    found = errors(tmp_path, m)
    assert any(want in e for e in found), found
    assert all(str(tmp_path / "m.yaml") in e for e in found)


def test_base_models_cannot_name_a_checkpoint(tmp_path):
    stand_in_model(tmp_path / "ckpt")
    m = base(models={**base()["models"], "old": {"checkpoint": "ckpt", "family": "custom"}},
             eval={"tasks": [{"name": "ev", "file": "t.py", "task": "t"}], "base_models": ["old"]})
    (msg,) = errors(tmp_path, m)
    assert "eval.base_models names 'old', an existing checkpoint" in msg


def test_checkpoint_folder_is_checked_where_plan_can_see_it(tmp_path):
    m = base(models={**base()["models"], "old": {"checkpoint": "ckpt", "family": "custom"}},
             eval={"tasks": [{"name": "ev", "file": "t.py", "task": "t"}]})
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "vocab.json").write_text("{}")
    (msg,) = errors(tmp_path, m)
    assert "checkpoint" in msg and "has no config.json or adapter_config.json" in msg
    # a PEFT adapter whose base model is gone
    (tmp_path / "ckpt" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/gone/base"}))
    (w,) = [w for w in run_check(tmp_path, m).warnings if "adapter" in w.message]
    assert "the adapter's base model /gone/base" in w.message and "not reachable" in w.message
    (msg,) = errors(tmp_path, {**m, "executor": {"kind": "local"}})  # the jobs run here: an error
    assert "/gone/base" in msg and "does not exist" in msg
    (tmp_path / "ckpt" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "model")}))
    assert not [w for w in run_check(tmp_path, m).warnings if "adapter" in w.message]


# --- cruijff_kit's task interface ----------------------------------------------------------------

def kit_manifest(tmp_path, **prompt) -> dict:
    shutil.copy(KIT_TASK, tmp_path / "kit.py")
    return base(prompt={"template": "Capitalize the given word: {input}\n", "system": "You are a helpful assistant.",
                        **prompt},
                eval={"tasks": [{"name": "caps", "file": "kit.py", "task": "capitalization"}], "max_tokens": 7})


def test_a_cruijff_kit_task_gets_data_path_and_an_eval_yaml_of_the_manifest_prompt(tmp_path):
    m = kit_manifest(tmp_path)
    run_check(tmp_path, m)  # accepted: today's clear refusal was for this interface
    compiled = compile_manifest(tmp_path / "m.yaml")
    node = "eval/tiny_words/epoch_2/caps"
    args = _load(compiled.files[f"{node}/task_config.yaml"])
    out = compiled.plan.output_dir
    assert args == {"data_path": str(REPO / "tests" / "fixtures" / "manifests" / "data" / "words.json"),
                    "config_path": f"{out}/{node}/eval.yaml", "split": "test", "use_chat_template": True,
                    "vis_label": "tiny_words", "max_tokens": 7, "temperature": 0}
    assert _load(compiled.files[f"{node}/eval.yaml"]) == {"prompt": "Capitalize the given word: {input}\n",
                                                          "system_prompt": "You are a helpful assistant."}
    finetune = _load(compiled.files["finetune/tiny_words/finetune.yaml"])["dataset"]
    assert (finetune["template"], finetune["system"]) == ("Capitalize the given word: {input}\n",
                                                          "You are a helpful assistant.")


def test_text_completion_turns_the_kit_tasks_chat_template_off(tmp_path):
    m = kit_manifest(tmp_path, style="text_completion", system=None, template="Word: {input}\nCapitalized: ")
    run_check(tmp_path, m)
    compiled = compile_manifest(tmp_path / "m.yaml")
    node = "eval/tiny_words/epoch_2/caps"
    assert _load(compiled.files[f"{node}/task_config.yaml"])["use_chat_template"] is False  # no system message
    assert _load(compiled.files[f"{node}/eval.yaml"]) == {"prompt": "Word: {input}\nCapitalized: ", "system_prompt": ""}


def test_what_a_kit_task_would_change_is_refused_or_warned(tmp_path):
    (msg,) = errors(tmp_path, kit_manifest(tmp_path, template='Answer as JSON {"word": ...}: {input}'))
    assert "fills prompt.template with str.format" in msg
    (msg,) = errors(tmp_path, kit_manifest(tmp_path, system='Answer in JSON: {{"word": ...}}'))
    assert "turns {{ and }} into { and }" in msg
    (w,) = [w for w in run_check(tmp_path, kit_manifest(tmp_path, system=None)).warnings if "cruijff_kit" in w.message]
    assert "adds a system message even when prompt.system is empty" in w.message
    chat = tmp_path / "chat"
    chat.mkdir()
    (chat / "test.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "a"},
                                                              {"role": "assistant", "content": "A"}]}]))
    m = kit_manifest(tmp_path, template=None)
    m["datasets"]["chat"] = {"path": str(chat), "format": "chat_json", "splits": {"train": "test", "validation": None}}
    m["eval"]["tasks"][0]["dataset"] = "chat"
    found = errors(tmp_path, m)
    assert any("it reads instruct_json files, and dataset 'chat' is chat_json" in e for e in found), found


def test_a_task_of_neither_interface_still_gets_the_clear_error(tmp_path):
    (tmp_path / "half.py").write_text("from inspect_ai import task\n@task\ndef half(data_path, split='test'):\n    pass\n")
    m = base(eval={"tasks": [{"name": "ev", "file": "half.py", "task": "half"}]})
    found = errors(tmp_path, m)
    assert any("does not take data, format, template, system" in e for e in found), found


# --- cruijff eval ----------------------------------------------------------------------------------

def test_eval_manifest_takes_the_prompt_of_the_epoch_folders_run(tmp_path):
    """An epoch folder of a plan brings its run's data and prompt (finetune.yaml) and the plan's model
    family and cluster (manifest.yaml): the seed's --finetune_epoch_dir; options beat them."""
    from cruijff.compiler.standalone import eval_manifest, trained_with
    from cruijff.compiler.write import write_plan

    shutil.copy(KIT_TASK, tmp_path / "kit.py")
    m = base(prompt={"template": "W: {input}", "system": "Sys."}, cluster={"partition": "gpu"})
    m["models"]["tiny"]["family"] = "custom"
    stand_in_model(tmp_path / "model")
    (tmp_path / "m.yaml").write_text(dump_yaml(m))
    compiled = compile_manifest(tmp_path / "m.yaml")
    write_plan(compiled.plan, compiled.files)
    epoch = Path(compiled.plan.output_dir) / "finetune" / "tiny_words" / "epoch_2"
    (epoch / "model").mkdir(parents=True)
    trained = trained_with(epoch)
    assert trained is not None and (trained.run, trained.epoch, trained.model) == ("tiny_words", 2, "tiny")
    assert trained_with(epoch / "model") == trained
    (epoch / "adapter").mkdir()  # finetune.export both: the merged model is what an evaluation loads
    assert trained_with(epoch).model_dir == str(epoch / "model")
    assert trained_with(epoch / "adapter").model_dir == str(epoch / "adapter")
    assert trained_with(tmp_path / "model") is None  # not an epoch folder of a plan
    got = eval_manifest(str(epoch), tasks=[f"{tmp_path / 'kit.py'}@capitalization"], out=str(tmp_path / "e"),
                        slurm=True, trained=trained, resources={"gpus": 0})
    assert got["models"] == {"tiny_words_epoch_2": {"checkpoint": str(epoch / "model"), "family": "custom"}}
    assert got["prompt"] == {"template": "W: {input}", "system": "Sys.", "style": "chat"}
    assert got["datasets"]["data"]["path"] == str(REPO / "tests" / "fixtures" / "manifests" / "data" / "words.json")
    assert got["cluster"] == {"partition": "gpu", "env": {}} or got["cluster"]["partition"] == "gpu"
    assert got["executor"]["kind"] == "slurm" and got["eval"]["resources"]["gpus"] == 0
    again = eval_manifest(str(epoch), tasks=[f"{tmp_path / 'kit.py'}@capitalization"], out=str(tmp_path / "e"),
                          slurm=False, trained=trained, system="Other.", template="{input}")
    assert again["prompt"]["system"] == "Other." and again["prompt"]["template"] == "{input}"


def test_eval_slurm_renders_one_sbatch_job_per_task(tmp_path):
    """`cruijff eval --slurm`: the manifest it plans says slurm, and each task is one job script
    with the SLURM options given (what apply then submits with sbatch)."""
    from cruijff.compiler.standalone import eval_manifest

    ckpt = stand_in_model(tmp_path / "ckpt")
    shutil.copy(KIT_TASK, tmp_path / "kit.py")
    m = eval_manifest(str(ckpt), tasks=[f"{tmp_path / 'kit.py'}@capitalization",
                                        f"{REPO}/experiments/tasks/capitalization.py@capitalization"],
                      out=str(tmp_path / "e"), slurm=True, data=str(REPO / "tests/fixtures/cruijff_kit/words_5L_80P_10.json"),
                      template="W: {input}", system="Sys.", resources={"gpus": 0, "time": "00:10:00"},
                      cluster={"partition": "debug", "account": "lab"})
    (tmp_path / "e.yaml").write_text(dump_yaml(m))
    compiled = compile_manifest(tmp_path / "e.yaml")
    assert compiled.plan.executor == "slurm"
    ids = [n.id for n in compiled.plan.nodes]
    assert ids == ["checkpoint_eval/ckpt/data/capitalization", "checkpoint_eval/ckpt/data/capitalization.capitalization"]
    for node in compiled.plan.nodes:
        script = compiled.files[f"{node.id}/job.sbatch"]
        assert "#SBATCH --partition=debug" in script and "#SBATCH --account=lab" in script
        assert "#SBATCH --time=00:10:00" in script and "--gres" not in script
        assert f"--metadata checkpoint={ckpt}" in script


def test_eval_needs_data_for_a_folder_outside_a_plan(tmp_path):
    from cruijff.errors import UsageError
    from cruijff.compiler.standalone import eval_manifest, parse_task

    with pytest.raises(UsageError, match="--data is required"):
        eval_manifest(str(tmp_path), tasks=["t.py@t"], out=str(tmp_path / "e"), slurm=False)
    with pytest.raises(UsageError, match="is not FILE@NAME"):
        parse_task("t.py")


def test_eval_help_imports_nothing_heavy():
    from tests.unit.test_architecture import HEAVY

    code = ("import sys\nfrom click.testing import CliRunner\nfrom cruijff.cli import cli\n"
            "r = CliRunner().invoke(cli, ['eval', '--help'])\nassert r.exit_code == 0 and '--task' in r.output, r.output\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_eval_errors_are_one_message(tmp_path):
    res = subprocess.run([sys.executable, "-m", "cruijff", "eval", str(tmp_path), "--task", "t.py@t"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2 and "error: --data is required" in res.stderr and "Traceback" not in res.stderr
    (tmp_path / "d.json").write_text(json.dumps({"test": [{"input": "a", "output": "A"}]}))
    res = subprocess.run([sys.executable, "-m", "cruijff", "eval", str(tmp_path), "--task", "nope.py@t",
                          "--data", "d.json", "--out", "o"], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 2 and "eval task file" in res.stderr and "does not exist" in res.stderr
    assert "eval.manifest.yaml" in res.stderr  # the place: the manifest cruijff eval wrote


def test_unset_checkpoint_manifest_errors_do_not_crash(tmp_path):
    with pytest.raises(ManifestError):
        run_check(tmp_path, base(models={"old": {"family": "custom"}}))


# --- cruijff import: cruijff_kit's own design file, its blueprint task, an eval-only run ----------

def kit_checkout(tmp_path: Path, eval_only: bool = False) -> Path:
    """cruijff_kit's test design file with its placeholders filled: __REPO__ a folder laid out like
    its repository (the blueprint's task file and the fixture data, vendored), __SCRATCH__ tmp."""
    repo, scratch = tmp_path / "ck", tmp_path / "scratch"
    (repo / "blueprints" / "capitalization").mkdir(parents=True)
    (repo / "tests" / "fixtures" / "data").mkdir(parents=True)
    shutil.copy(KIT_TASK, repo / "blueprints" / "capitalization" / "inspect_task.py")
    shutil.copy(KIT_TASK.parent / "words_5L_80P_10.json", repo / "tests" / "fixtures" / "data")
    stand_in_model(scratch / "pretrained-llms" / "Llama-3.2-1B-Instruct", ["model.safetensors"])
    text = (KIT_TASK.parent / "experiment_summary.yaml").read_text()
    text = text.replace("__REPO__", str(repo)).replace("__SCRATCH__", str(scratch))
    if eval_only:  # cruijff_kit's eval-only run: a checkpoint of an earlier experiment (its template's shape)
        stand_in_model(scratch / "prior" / "epoch_1")
        text = text.replace("\nevaluation:", f"""
  - name: "prior_rank8"
    type: "eval-only"
    model: "Llama-3.2-1B-Instruct"
    parameters:
      checkpoint_path: "{scratch}/prior/epoch_1"

evaluation:""", 1)
        row = '      vis_label: "rank8"\n      tasks: ["capitalization"]\n      epochs: [0]\n'
        assert row in text  # the matrix names every run it evaluates: the checkpoint gets a row
        text = text.replace(row, row + '\n    - run: "prior_rank8"\n      tasks: ["capitalization"]\n', 1)
    summary = tmp_path / "experiment_summary.yaml"
    summary.write_text(text)
    return summary


def import_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cruijff", "import", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_cruijff_kits_own_design_file_imports_with_its_blueprint_task_unchanged(tmp_path):
    """Before issue 25 this import was refused (the blueprint task takes data_path/config_path, not
    data/template/system); now the task runs unchanged with the design file's prompt."""
    summary = kit_checkout(tmp_path)
    proc = import_cli(str(summary), "--out", str(tmp_path / "m.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    compiled = compile_manifest(tmp_path / "m.yaml")
    evals = [n for n in compiled.plan.nodes if n.kind == EVAL]
    assert {n.attrs["run"] for n in evals} == {"Llama-3.2-1B-Instruct_rank4", "Llama-3.2-1B-Instruct_rank8"}
    node = evals[0].id
    assert _load(compiled.files[f"{node}/eval.yaml"]) == {"prompt": "Capitalize the given word: {input}\n",
                                                          "system_prompt": "You are a helpful assistant."}
    args = _load(compiled.files[f"{node}/task_config.yaml"])
    assert args["data_path"].endswith("tests/fixtures/data/words_5L_80P_10.json") and args["use_chat_template"] is True
    assert "cruijff_kit tasks run unchanged" in (tmp_path / "m.yaml").read_text()


def test_an_eval_only_run_imports_as_a_checkpoint_model(tmp_path):
    summary = kit_checkout(tmp_path, eval_only=True)
    proc = import_cli(str(summary), "--out", str(tmp_path / "m.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    m = _load((tmp_path / "m.yaml").read_text())
    assert m["models"]["prior_rank8"] == {"checkpoint": str(tmp_path / "scratch/prior/epoch_1"),
                                          "family": "Llama-3.2-1B-Instruct"}
    assert "eval-only" not in (tmp_path / "m.yaml").read_text().split("# Fields without")[-1]
    compiled = compile_manifest(tmp_path / "m.yaml")
    kinds = Counter(n.kind for n in compiled.plan.nodes)
    assert kinds == {FINETUNE: 2, EVAL: 2, CHECKPOINT_EVAL: 1}
    # only eval-only runs: nothing to fine-tune
    text = summary.read_text()
    start = text.index("runs:\n") + len("runs:\n")
    only = text[:start] + text[text.index('  - name: "prior_rank8"'):]
    only = only[:only.index("  matrix:\n")] + '  matrix:\n    - run: "prior_rank8"\n'  # the matrix ends the file
    summary.write_text(only)
    proc = import_cli(str(summary), "--out", str(tmp_path / "m2.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    compiled = compile_manifest(tmp_path / "m2.yaml")
    assert [n.id for n in compiled.plan.nodes] == ["checkpoint_eval/prior_rank8/words_5L_80P_10/capitalization"]


def test_an_eval_only_run_without_its_checkpoint_is_refused(tmp_path):
    summary = kit_checkout(tmp_path, eval_only=True)
    summary.write_text(summary.read_text().replace("checkpoint_path:", "other_path:"))
    proc = import_cli(str(summary), cwd=tmp_path)
    assert proc.returncode == 2 and "has no parameters.checkpoint_path" in proc.stderr
    assert f"{summary}:" in proc.stderr


def test_the_jobs_preflight_takes_a_merged_model_or_an_adapter(tmp_path):
    """What a checkpoint_eval job checks first when plan could not see the folder (the rendered
    `python -m cruijff.preflight model NAME FOLDER --any config.json adapter_config.json`)."""
    from cruijff.preflight import check_model

    folder = tmp_path / "ckpt"
    assert "does not exist on this node" in check_model("old", str(folder), [], ["config.json", "adapter_config.json"])
    folder.mkdir()
    assert "has no config.json or adapter_config.json" in check_model("old", str(folder), [],
                                                                      ["config.json", "adapter_config.json"])
    (folder / "adapter_config.json").write_text("{}")
    assert check_model("old", str(folder), [], ["config.json", "adapter_config.json"]) is None


def test_status_and_report_show_a_checkpoint_as_itself(tmp_path):
    """A checkpoint's evaluation is its own row: `<model> (checkpoint)` in the status grid and the
    report's scoreboard (not a base model, not a run), its score read from its log."""
    import pandas as pd

    from cruijff.plan import Node, Plan, Resources
    from cruijff.results.report.collect import score_rows
    from cruijff.results.report.tables import scoreboard
    from cruijff.run.status import grid
    from tests.helpers_plans import write_score

    node = Node("checkpoint_eval/old/words/caps", CHECKPOINT_EVAL, (), Resources(), "h",
                {"model": "old", "dataset": "words", "eval_dataset": "words", "task": "caps", "checkpoint": "/c"})
    plan = Plan(experiment="x", output_dir=str(tmp_path), manifest="m.yaml", executor="local", max_parallel=1,
                cluster={}, nodes=(node,))
    write_score(plan, node.id, 0.75)
    rows, total, missing = score_rows(plan, tmp_path)
    assert (total, missing) == (1, []) and rows[0]["kind"] == CHECKPOINT_EVAL and rows[0]["value"] == 0.75
    board = scoreboard(pd.DataFrame(rows)).reset_index()
    assert list(board["run"]) == ["old (checkpoint)"] and list(board["epoch"]) == ["checkpoint"]
    assert grid([node]) == {"columns": ["caps@checkpoint"],
                            "rows": [{"label": "old (checkpoint)", "cells": {"caps@checkpoint": node.id}}]}
