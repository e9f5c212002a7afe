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
    for field in ("experiment.purpose", "data.data_generation",
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


# --- issue 25: evaluation.matrix cell for cell, decoding settings, per-task prompts ----------------

KIT_DESIGN = """\
experiment: {name: matrix, question: which cells, dir: out}
tools: {preparation: torchtune, evaluation: inspect-ai}
variables: {lora_rank: [4, 8]}
controls: {system_prompt: "Be brief.", prompt: "Capitalize: {input}\\n", dataset_type: chat_completion, epochs: 3, batch_size: 4}
models: {base: [{name: Llama-3.2-1B-Instruct, path: /models/Llama-3.2-1B-Instruct, size_gb: 2.5}]}
data: {training: {path: words.json, dataset_label: words, format: json}}
runs:
  - {name: r4, type: fine-tuned, model: Llama-3.2-1B-Instruct, parameters: {lora_rank: 4}}
  - {name: r8, type: fine-tuned, model: Llama-3.2-1B-Instruct, parameters: {lora_rank: 8}}
  - {name: base, type: control, model: Llama-3.2-1B-Instruct, parameters: {}}
evaluation:
EVALUATION
"""


def imported_plan(tmp_path: Path, evaluation: str):
    (tmp_path / "cap.py").write_text("from inspect_ai import task\n\n\n@task\ndef cap(**kwargs):\n    ...\n")
    summary = tmp_path / "experiment_summary.yaml"
    summary.write_text(KIT_DESIGN.replace("EVALUATION\n", evaluation))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(render(translate(load(summary)), summary.name))
    return yaml.safe_load(summary.read_text()), translate(load(summary)), compile_manifest(manifest), manifest


def kit_cells(summary: dict, imported) -> set[tuple]:
    """The cells cruijff_kit's scaffold makes of evaluation.matrix: (run, epoch, task); controls (model, None, task)."""
    runs = {r["name"]: r for r in summary["runs"]}
    out = set()
    for row in summary["evaluation"]["matrix"]:
        run = runs[row["run"]]
        for task in row["tasks"]:
            if run["type"] == "control":
                out.add((run["model"], None, task))
            else:
                out |= {(imported.runs[row["run"]], e, task) for e in row["epochs"]}
    return out


def plan_cells(compiled) -> set[tuple]:
    return {(n.attrs["run"], n.attrs["epoch"], n.attrs["task"]) if n.kind == EVAL else (n.attrs["model"], None, n.attrs["task"])
            for n in compiled.plan.nodes if n.kind in (EVAL, BASE_EVAL)}


@pytest.mark.parametrize("matrix", [
    # every run the same cells: the compact form (eval.epochs, base_models)
    "  - {run: r4, tasks: [cap, cap2], epochs: [1, 2]}\n  - {run: r8, tasks: [cap, cap2], epochs: [1, 2]}\n"
    "  - {run: base, tasks: [cap, cap2], epochs: null}\n",
    # selective: other epochs and tasks per run, the control on one task
    "  - {run: r4, vis_label: four, tasks: [cap], epochs: [0]}\n  - {run: r8, tasks: [cap, cap2], epochs: [1, 2]}\n"
    "  - {run: base, tasks: [cap2], epochs: null}\n",
    # a run and the control left out
    "  - {run: r8, tasks: [cap2], epochs: [2]}\n",
])
def test_the_matrix_imports_cell_for_cell(tmp_path, matrix):
    evaluation = ("  tasks:\n    - {name: cap, script: cap.py, dataset: same}\n    - {name: cap2, script: cap.py, dataset: same}\n"
                  "  matrix:\n" + matrix)
    summary, imported, compiled, manifest = imported_plan(tmp_path, evaluation)
    assert plan_cells(compiled) == kit_cells(summary, imported)
    notes = [line for line in manifest.read_text().splitlines() if "#   evaluation.matrix[" in line]
    assert all(".vis_label:" in line for line in notes)  # only vis_label is left as a comment


def test_cruijff_kits_own_design_fixture_imports_its_cells(tmp_path):
    """cruijff_kit's tests/fixtures/design/experiment_summary.yaml (its LoRA rank comparison)."""
    evaluation = ('  system_prompt: "Be brief."\n  temperature: 0.0\n  scorers: [{name: match}]\n'
                  "  tasks: [{name: cap, script: cap.py, dataset: same, description: accuracy}]\n"
                  "  matrix:\n    - {run: r4, vis_label: rank4, tasks: [cap], epochs: [0]}\n"
                  "    - {run: r8, vis_label: rank8, tasks: [cap], epochs: [0]}\n")
    summary, imported, compiled, manifest = imported_plan(tmp_path, evaluation)
    assert plan_cells(compiled) == kit_cells(summary, imported)
    text = manifest.read_text()
    assert "temperature" not in text.split("# Fields of the design file")[0]  # 0.0 is greedy, the default
    assert "evaluation.temperature" not in text and "evaluation.system_prompt" not in text


def test_decoding_settings_import_into_the_inspect_command(tmp_path):
    evaluation = ("  do_sample: true\n  temperature: 0.7\n  max_connections: 8\n"
                  "  tasks: [{name: cap, script: cap.py, dataset: same}]\n"
                  "  matrix: [{run: r4, tasks: [cap], epochs: [2]}]\n")
    _, imported, compiled, manifest = imported_plan(tmp_path, evaluation)
    m = yaml.safe_load(manifest.read_text())
    assert {k: m["eval"][k] for k in ("do_sample", "temperature", "max_connections")} == \
        {"do_sample": True, "temperature": 0.7, "max_connections": 8}
    [script] = [v for k, v in compiled.files.items() if k.startswith("eval/") and k.endswith("job.sbatch")]
    args = script.strip().splitlines()[-1].split()
    assert args[args.index("--temperature") + 1] == "0.7" and args[args.index("--max-connections") + 1] == "8"
    [config] = [v for k, v in compiled.files.items() if k.startswith("eval/") and k.endswith("model_config.yaml")]
    assert yaml.safe_load(config)["do_sample"] is True


def test_per_task_prompts_import_as_cross_prompt_evaluations(tmp_path):
    evaluation = ("  tasks:\n    - {name: cap, script: cap.py, dataset: same}\n"
                  "    - {name: cue, script: cap.py, dataset: same, prompt: \"Capitalize carefully: {input}\\n\", "
                  "system_prompt: \"\"}\n"
                  "  matrix:\n    - {run: r4, tasks: [cap, cue], epochs: [2]}\n    - {run: base, tasks: [cue], epochs: null}\n")
    _, imported, compiled, manifest = imported_plan(tmp_path, evaluation)
    m = yaml.safe_load(manifest.read_text())
    cue = m["eval"]["tasks"][1]
    assert cue["prompt"] == {"template": "Capitalize carefully: {input}\n", "system": None} and cue["cross_prompt"] is True
    node = compiled.plan.by_id()[f"eval/{imported.runs['r4']}/epoch_2/cue"]
    assert node.attrs["cross_prompt"] == {"trained": "prompt", "evaluated": "cue.prompt"}
    cfg = yaml.safe_load(compiled.files[f"{node.id}/task_config.yaml"])
    assert (cfg["template"], cfg["system"]) == ("Capitalize carefully: {input}\n", None)
    base = yaml.safe_load(compiled.files["base_eval/Llama-3.2-1B-Instruct/words/cue/task_config.yaml"])
    assert base["template"] == "Capitalize carefully: {input}\n"
    assert "evaluation.tasks[1].prompt" not in manifest.read_text()


def test_per_run_prompts_import_as_prompt_variants(tmp_path):
    """cruijff_kit's runs[].parameters.prompt (a fine-tune trains and evaluates with its own prompt):
    a prompt variant per distinct prompt, swept by grid.prompt; no cross-prompt evaluation."""
    (tmp_path / "cap.py").write_text("from inspect_ai import task\n\n\n@task\ndef cap(**kwargs):\n    ...\n")
    summary = tmp_path / "experiment_summary.yaml"
    summary.write_text(KIT_DESIGN.replace("variables: {lora_rank: [4, 8]}\n", "").replace(
        "parameters: {lora_rank: 8}", 'parameters: {lora_rank: 8, prompt: "Carefully: {input}\\n"}').replace(
        "EVALUATION\n", "  tasks: [{name: cap, script: cap.py, dataset: same}]\n"))
    manifest = tmp_path / "manifest.yaml"
    imported = translate(load(summary))
    manifest.write_text(render(imported, summary.name))
    compiled = compile_manifest(manifest)
    kit = {"r4": "Capitalize: {input}\n", "r8": "Carefully: {input}\n"}
    for kit_name, template in kit.items():
        run = imported.runs[kit_name]
        trained = yaml.safe_load(compiled.files[f"finetune/{run}/finetune.yaml"])["dataset"]
        assert trained["template"] == template and trained["system"] == "Be brief."
        evals = [n for n in compiled.plan.nodes if n.kind == EVAL and n.attrs["run"] == run]
        assert evals and all("cross_prompt" not in n.attrs for n in evals)
        for n in evals:
            assert yaml.safe_load(compiled.files[f"{n.id}/task_config.yaml"])["template"] == template
    assert "parameters.prompt" not in manifest.read_text().split("# Fields of the design file")[-1]


def test_a_differing_evaluation_system_prompt_is_each_tasks_prompt(tmp_path):
    """cruijff_kit's older evaluation.system_prompt, when it differs from controls.system_prompt:
    every task without its own system_prompt is evaluated with it (a cross-prompt evaluation)."""
    evaluation = ('  system_prompt: "Answer in capitals."\n'
                  "  tasks:\n    - {name: cap, script: cap.py, dataset: same}\n"
                  '    - {name: own, script: cap.py, dataset: same, system_prompt: "Be brief."}\n'
                  "  matrix: [{run: r4, tasks: [cap, own], epochs: [2]}]\n")
    _, imported, compiled, manifest = imported_plan(tmp_path, evaluation)
    tasks = yaml.safe_load(manifest.read_text())["eval"]["tasks"]
    assert tasks[0]["prompt"] == {"system": "Answer in capitals."} and tasks[0]["cross_prompt"] is True
    assert "prompt" not in tasks[1] and "cross_prompt" not in tasks[1]  # the training prompt's system
    systems = {n.attrs["task"]: yaml.safe_load(compiled.files[f"{n.id}/task_config.yaml"])["system"]
               for n in compiled.plan.nodes if n.kind == EVAL}
    assert systems == {"cap": "Answer in capitals.", "own": "Be brief."}


def test_a_bad_matrix_row_is_an_error_at_its_place(tmp_path):
    (tmp_path / "cap.py").write_text("from inspect_ai import task\n\n\n@task\ndef cap(**kwargs):\n    ...\n")
    summary = tmp_path / "experiment_summary.yaml"
    summary.write_text(KIT_DESIGN.replace("EVALUATION\n", "  tasks: [{name: cap, script: cap.py, dataset: same}]\n"
                                          "  matrix:\n    - {run: r4, tasks: [cap], epochs: [zero]}\n"
                                          "    - {run: r9, tasks: [cap], epochs: [0]}\n"))
    with pytest.raises(ManifestError) as e:
        translate(load(summary))
    found = [(p.message, p.location.line) for p in e.value.problems]
    assert found == [("evaluation.matrix[0].epochs must be a list of 0-based epochs, or null", 14),
                     ("evaluation.matrix[1] names run 'r9', which is not under runs", 15)]
