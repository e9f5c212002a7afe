"""`cruijff import`: cruijff_kit's experiment_summary.yaml → a manifest that validates and plans
the runs and evaluations the design file declares, with cruijff_kit's training values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cruijff.compiler.pipeline import compile_manifest
from cruijff.errors import ManifestError
from cruijff.compiler.kit_import import render, translate
from cruijff.plan import BASE_EVAL, EVAL, FINETUNE
from cruijff.compiler.source import load

REPO = Path(__file__).resolve().parents[2]
IMPORTED = REPO / "experiments" / "imported"
EXAMPLES = ["capitalization", "twins"]
UPDATE = os.environ.get("CRUIJFF_UPDATE_GOLDEN", "") not in ("", "0")

# cruijff_kit 0.3.4's values (setup_finetune.py defaults, finetune_template.yaml, setup_inspect.py,
# the capitalization blueprint): the table of issue 14.
KIT = {"lora_rank": 64, "lora_alpha": 128, "lr": 1e-4, "num_warmup_steps": 100, "seed": 14, "eval_seed": 14,
       "max_tokens": 20, "lora_dropout": 0.0, "weight_decay": 0.01, "batch_size": 4, "max_seq_len": 2048,
       "lr_scheduler": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
       "lora_attn_modules": ["q_proj", "v_proj", "output_proj"], "apply_lora_to_mlp": True, "dtype": "bf16"}


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_imports_are_what_the_import_prints(name):
    """experiments/imported/<name>.yaml is `cruijff import <name>.summary.yaml` (regenerate with
    CRUIJFF_UPDATE_GOLDEN=1)."""
    proc = cli("import", str(IMPORTED / f"{name}.summary.yaml"), "--out", str(IMPORTED / f"{name}.yaml")) if UPDATE \
        else cli("import", str(IMPORTED / f"{name}.summary.yaml"))
    assert proc.returncode == 0, proc.stderr
    # stdout's paths are absolute (it may be saved anywhere); --out FILE's resolve from FILE's folder
    assert f"{REPO}/experiments/tasks/" in proc.stdout or UPDATE
    shipped = (IMPORTED / f"{name}.yaml").read_text()
    assert proc.stdout.replace(f"{IMPORTED}/", "").replace(f"{REPO}/experiments/", "../") == shipped or UPDATE
    assert "without an equivalent" in proc.stderr


@pytest.mark.parametrize("name", EXAMPLES)
def test_imported_plans_have_the_declared_runs_and_evaluations(name):
    summary = yaml.safe_load((IMPORTED / f"{name}.summary.yaml").read_text())
    imported = translate(load(IMPORTED / f"{name}.summary.yaml"))
    compiled = compile_manifest(IMPORTED / f"{name}.yaml")
    nodes = compiled.plan.nodes
    tuned = [r for r in summary["runs"] if r["type"] == "fine-tuned"]
    controls = [r for r in summary["runs"] if r["type"] == "control"]
    finetunes = {n.attrs["run"] for n in nodes if n.kind == FINETUNE}
    assert finetunes == {imported.runs[r["name"]] for r in tuned} and len(finetunes) == len(tuned)
    # each fine-tuned run's hyperparameters are the design file's
    for r in tuned:
        node = next(n for n in nodes if n.kind == FINETUNE and n.attrs["run"] == imported.runs[r["name"]])
        hp = node.attrs["hyperparameters"]
        for key, value in r["parameters"].items():
            assert hp[{"num_warmup_steps": "warmup_steps"}.get(key, key)] == pytest.approx(float(value))
        assert hp["epochs"] == summary["controls"]["epochs"]
    matrix = {row["run"]: row for row in summary["evaluation"]["matrix"]}
    evals = {(n.attrs["run"], n.attrs["epoch"], n.attrs["task"]) for n in nodes if n.kind == EVAL}
    assert evals == {(imported.runs[r["name"]], e, t) for r in tuned
                     for e in matrix[r["name"]]["epochs"] for t in matrix[r["name"]]["tasks"]}
    base = {(n.attrs["model"], n.attrs["task"]) for n in nodes if n.kind == BASE_EVAL}
    assert base == {(r["model"], t) for r in controls for t in matrix[r["name"]]["tasks"]}


def test_import_renders_cruijff_kit_values_into_finetune_yaml(tmp_path):
    """The design file of cruijff_kit's own tests sets only epochs and batch size: everything else
    in finetune.yaml (and the eval command) must be cruijff_kit's value."""
    summary = tmp_path / "experiment_summary.yaml"
    (tmp_path / "cap.py").write_text("from inspect_ai import task\n\n\n@task\ndef cap(**kwargs):\n    ...\n")
    summary.write_text("""\
experiment: {name: parity, question: same results?, dir: out}
tools: {preparation: torchtune, evaluation: inspect-ai}
controls: {system_prompt: "", prompt: "Capitalize: {input}\\n", dataset_type: chat_completion, epochs: 2, batch_size: 4}
models: {base: [{name: Llama-3.2-1B-Instruct, path: /models/Llama-3.2-1B-Instruct, size_gb: 2.5}]}
data: {training: {path: words.json, dataset_label: words, format: json}}
runs:
  - {name: only, type: fine-tuned, model: Llama-3.2-1B-Instruct, parameters: {}}
evaluation:
  tasks: [{name: cap, script: cap.py, dataset: same}]
  matrix: [{run: only, tasks: [cap], epochs: [0, 1]}]
""")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(render(translate(load(summary)), summary.name))
    compiled = compile_manifest(manifest)
    [ft_file] = [k for k in compiled.files if k.endswith("finetune.yaml")]
    ft = yaml.safe_load(compiled.files[ft_file])
    assert ft["model"]["lora_rank"] == KIT["lora_rank"] and ft["model"]["lora_alpha"] == KIT["lora_alpha"]
    assert ft["model"]["lora_dropout"] == KIT["lora_dropout"]
    assert ft["model"]["lora_attn_modules"] == KIT["lora_attn_modules"]
    assert ft["model"]["apply_lora_to_mlp"] is KIT["apply_lora_to_mlp"]
    assert ft["optimizer"]["lr"] == KIT["lr"] and ft["optimizer"]["weight_decay"] == KIT["weight_decay"]
    assert ft["lr_scheduler"] == {"_component_": KIT["lr_scheduler"], "num_warmup_steps": KIT["num_warmup_steps"]}
    assert ft["seed"] == KIT["seed"] and ft["batch_size"] == KIT["batch_size"] and ft["dtype"] == KIT["dtype"]
    assert ft["tokenizer"]["max_seq_len"] == KIT["max_seq_len"]
    assert ft["save_epochs"] == [0, 1]  # every epoch, as torchtune saves them for cruijff_kit
    assert ft["dataset"]["system"] is None and ft["dataset"]["template"] == "Capitalize: {input}\n"
    scripts = [v for k, v in compiled.files.items() if k.startswith("eval/") and k.endswith("job.sbatch")]
    assert len(scripts) == 2
    for script in scripts:
        assert f"--seed {KIT['eval_seed']}" in script and f"--max-tokens {KIT['max_tokens']}" in script


def test_unmapped_fields_are_comments_and_the_manifest_validates(tmp_path):
    text = (IMPORTED / "twins.yaml").read_text()
    body = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert "checkpoint: /scratch/old/run/artifacts/epoch_0" in "\n".join(body)  # the eval-only run: a checkpoint model
    notes = text[text.index("# Fields of the design file"):]
    for field in ("experiment.purpose", "data.data_generation", "evaluation.max_connections",
                  "evaluation.scorers", "models.base[1].size_gb"):
        assert f"#   {field}:" in notes, field
    assert cli("validate", str(IMPORTED / "twins.yaml")).returncode == 0


def test_bad_design_files_are_one_message_with_a_place(tmp_path):
    bad = tmp_path / "experiment_summary.yaml"
    bad.write_text("experiment: {name: x}\nmodels:\n  base:\n    - {name: Mistral-9B, path: /m}\n"
                   "data: {training: {path: d.json}}\n")
    proc = cli("import", str(bad))
    assert proc.returncode == 2 and proc.stdout == ""
    assert f"{bad}:4:" in proc.stderr and "Mistral-9B" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(ManifestError) as info:
        translate(load(bad))
    assert "not in cruijff's registry" in str(info.value.problems[0])
    bad.write_text("experiment: [\n")
    proc = cli("import", str(bad))
    assert proc.returncode == 2 and "YAML syntax error" in proc.stderr and proc.stdout == ""
    proc = cli("import", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


def test_import_does_not_import_heavy_libraries():
    code = ("import sys; from cruijff.cli import cli\n"
            "try:\n    cli.main(args=['import', 'experiments/imported/twins.summary.yaml'], standalone_mode=False)\n"
            "finally:\n"
            "    print([m for m in ('torch','torchtune','transformers','inspect_ai') if m in sys.modules], "
            "file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"


def test_a_translation_that_does_not_validate_prints_nothing(tmp_path):
    summary = tmp_path / "experiment_summary.yaml"
    summary.write_text("experiment: {name: x, dir: out}\ncontrols: {epochs: 0}\n"
                       "models: {base: [{name: Llama-3.2-1B-Instruct, path: /m}]}\ndata: {training: {path: d.json}}\n")
    proc = cli("import", str(summary))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "imported manifest:" in proc.stderr and "epochs" in proc.stderr and "--no-check" in proc.stderr
    proc = cli("import", "--no-check", str(summary))
    assert proc.returncode == 0 and "epochs: 0" in proc.stdout


def test_text_completion_dataset_type_becomes_prompt_style(tmp_path):
    """cruijff_kit's `dataset_type: text_completion` (base models) is cruijff's prompt.style: the
    rendered fine-tune and evaluation configs use the plain text, no chat template; its system
    prompt, which a text_completion prompt cannot hold, becomes a comment."""
    summary = tmp_path / "experiment_summary.yaml"
    (tmp_path / "cap.py").write_text("from inspect_ai import task\n\n\n@task\ndef cap(**kwargs):\n    ...\n")
    summary.write_text("""\
experiment: {name: base, question: base model?, dir: out}
controls: {system_prompt: "Be brief.", prompt: "Word: {input}\\nCapitalized:", dataset_type: text_completion}
models: {base: [{name: Llama-3.2-1B, path: /models/Llama-3.2-1B, size_gb: 2.5}]}
data: {training: {path: words.json, dataset_label: words, format: json}}
runs:
  - {name: only, type: fine-tuned, model: Llama-3.2-1B, parameters: {}}
evaluation:
  tasks: [{name: cap, script: cap.py, dataset: same}]
  matrix: [{run: only, tasks: [cap], epochs: [0]}]
""")
    text = render(translate(load(summary)), summary.name)
    assert "style: text_completion  # controls.dataset_type text_completion" in text
    assert "#   controls.system_prompt: Be brief." in text
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    compiled = compile_manifest(manifest)
    [ft_file] = [k for k in compiled.files if k.endswith("finetune.yaml")]
    ds = yaml.safe_load(compiled.files[ft_file])["dataset"]
    assert ds["style"] == "text_completion" and ds["system"] is None
    [mc] = [yaml.safe_load(v) for k, v in compiled.files.items() if k.startswith("eval/") and k.endswith("model_config.yaml")]
    assert mc["tokenizer_call_args"] == {"add_special_tokens": True} and "chat_template" in mc


def test_out_file_and_stdout_both_validate_from_anywhere(tmp_path):
    """The documented `cruijff import x.yaml > manifest.yaml`, saved elsewhere, validates (issue 23, item 4)."""
    summary = str(IMPORTED / "capitalization.summary.yaml")
    (tmp_path / "a" / "b").mkdir(parents=True)
    printed = cli("import", summary, cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    (tmp_path / "a" / "printed.yaml").write_text(printed.stdout)
    out = tmp_path / "a" / "b" / "written.yaml"
    written = cli("import", summary, "--out", str(out), cwd=tmp_path)
    assert written.returncode == 0 and written.stdout == "", written.stderr
    task = yaml.safe_load(out.read_text())["eval"]["tasks"][0]["file"]
    assert os.path.normpath(out.parent / task) == str(REPO / "experiments" / "tasks" / "capitalization.py")
    for manifest in (tmp_path / "a" / "printed.yaml", out):
        proc = cli("validate", str(manifest), cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _design(tmp_path, task_dataset: str, script: str = f"{REPO}/experiments/tasks/capitalization.py") -> Path:
    """The capitalization design file in tmp_path, its paths absolute, with this task dataset and script."""
    text = (IMPORTED / "capitalization.summary.yaml").read_text()
    text = text.replace("path: ../data/", f"path: {REPO}/experiments/data/")
    text = text.replace("      dataset: same", f"      dataset: {task_dataset}", 1)
    text = text.replace("script: ../tasks/capitalization.py", f"script: {script}")
    path = tmp_path / "design.summary.yaml"
    path.write_text(text)
    return path


def test_a_task_reading_the_training_file_evaluates_on_that_dataset(tmp_path):
    """Not a second dataset: that doubled the fine-tunes (8 instead of 4) silently."""
    summary = yaml.safe_load((IMPORTED / "capitalization.summary.yaml").read_text())
    path = _design(tmp_path, f"{REPO}/experiments/./data/capitalization_5.json")  # the same file, spelt apart
    try:
        proc = cli("import", str(path), "--out", str(tmp_path / "m.yaml"))
        assert proc.returncode == 0, proc.stderr
        m = yaml.safe_load((tmp_path / "m.yaml").read_text())
        assert len(m["datasets"]) == 1 and "dataset" not in m["eval"]["tasks"][0]
        nodes = compile_manifest(tmp_path / "m.yaml", out=str(tmp_path / "plan")).plan.nodes
        tuned = [r for r in summary["runs"] if r["type"] == "fine-tuned"]
        assert len([n for n in nodes if n.kind == FINETUNE]) == len(tuned)
    finally:
        path.unlink()


def test_a_task_with_its_own_data_adds_no_fine_tunes(tmp_path):
    summary = yaml.safe_load((IMPORTED / "capitalization.summary.yaml").read_text())
    path = _design(tmp_path, str(tmp_path / "other.json"))
    try:
        proc = cli("import", str(path), "--out", str(tmp_path / "m.yaml"), "--no-check")
        assert proc.returncode == 0, proc.stderr
        m = yaml.safe_load((tmp_path / "m.yaml").read_text())
        assert len(m["datasets"]) == 2 and m["grid"]["dataset"] == [next(iter(m["datasets"]))]
        assert m["eval"]["tasks"][0]["dataset"] == list(m["datasets"])[1]
    finally:
        path.unlink()


def test_a_task_script_on_the_cluster_only_is_a_warning(tmp_path):
    path = _design(tmp_path, "same", script="/cluster/only/tasks/capitalization.py")
    try:
        proc = cli("import", str(path), "--out", str(tmp_path / "m.yaml"))
        assert proc.returncode == 0, proc.stderr
        assert "task file /cluster/only/tasks/capitalization.py is not reachable from here" in proc.stderr
    finally:
        path.unlink()


def test_paths_are_rebased_to_the_out_folder_or_made_absolute():
    from cruijff.compiler.kit_import import rebase_paths

    m = {"output_dir": "out/x", "models": {"a": {"path": "/models/a"}}, "datasets": {"d": {"path": "../data/d.json"}},
         "eval": {"tasks": [{"file": "$TASKS/t.py"}]}}
    assert rebase_paths(m, "/w/kit/design", "/w/kit/manifests") == {
        "output_dir": "../design/out/x", "models": {"a": {"path": "/models/a"}},
        "datasets": {"d": {"path": "../data/d.json"}}, "eval": {"tasks": [{"file": "$TASKS/t.py"}]}}
    assert rebase_paths(m, "/w/kit/design", None)["datasets"]["d"]["path"] == "/w/kit/data/d.json"
