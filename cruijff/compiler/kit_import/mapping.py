"""Mapping cruijff_kit's design file to a manifest, section by section (`translate`).

Each section of experiment_summary.yaml is read and mapped in one method, so a field is read where
it is mapped; a field without an equivalent becomes a note, a field that cannot be imported a
problem at its file:line:col (all of them raised together as one ManifestError). The module is
long because it maps every section of the design file, one method each: splitting it would read a
field in one place and map it in another.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cruijff.compiler.expand import run_name
from cruijff.compiler.families import FAMILIES
from cruijff.compiler.kit_import import evaluation_cells
from cruijff.compiler.kit_import.reading import (HYPERPARAMETERS, as_number, hp_value, safe_name, save_setting,
                                                 short_text, task_function)
from cruijff.compiler.naming import render_or_empty, template_for
from cruijff.compiler.schema import hyperparameter_names
from cruijff.data.generate import GENERATORS
from cruijff.compiler.source import Source, to_plain
from cruijff.errors import ManifestError, Problem


@dataclass
class Imported:
    """The manifest as plain data, the notes on fields without an equivalent, and per-key remarks."""

    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # "key.path: value — why", one per unmapped field
    remarks: dict[tuple[str, ...], str] = field(default_factory=dict)  # manifest key path → comment
    runs: dict[str, str] = field(default_factory=dict)  # cruijff_kit run name → cruijff run name


class _Translator:
    def __init__(self, source: Source):
        self.source = source
        self.s = to_plain(source.data)
        self.problems: list[Problem] = []
        self.out = Imported(manifest={})
        self.computes: list[dict[str, Any]] = []
        self.control_runs: dict[str, str] = {}  # cruijff_kit control run name → model (a base-model row)
        self.checkpoint_runs: dict[str, str] = {}  # eval-only run name → checkpoint model (a base_model row too)
        self.saving: dict[str, Any] = {}  # finetune.export and save_epochs, from controls

    def note(self, path: str, value: Any, why: str) -> None:
        self.out.notes.append(f"{path}: {short_text(value)} — {why}")

    def local(self, path: str) -> str:
        """A path of the design file as seen from here (relative ones are the design file's folder's)."""
        return os.path.normpath(os.path.join(self.source.path.resolve().parent, os.path.expanduser(path)))

    def error(self, keys: list[Any], message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(message, self.source.locate(keys), hint))

    def section(self, key: str) -> dict[str, Any]:
        value = self.s.get(key) or {}
        if not isinstance(value, dict):
            self.error([key], f"{key} must be a mapping")
            return {}
        return value

    # --- the parts ---------------------------------------------------------------------------

    def experiment(self, m: dict[str, Any]) -> None:
        exp = self.section("experiment")
        if not exp.get("name"):
            self.error(["experiment"], "experiment.name is missing", "name the experiment (it becomes `experiment:`)")
        m["experiment"] = safe_name(exp.get("name", "imported"))
        if exp.get("question"):
            m["description"] = str(exp["question"])
        m["output_dir"] = str(exp.get("dir") or f"${{SCRATCH}}/cruijff/{m['experiment']}")
        if not exp.get("dir"):
            self.out.remarks[("output_dir",)] = "experiment.dir was not set"
        for key in ("project", "date", "hypothesis", "purpose"):
            if key in exp:
                self.note(f"experiment.{key}", exp[key], "no manifest field (free text: keep it in description)")
        tools = self.section("tools")
        for key, expected in (("preparation", "torchtune"), ("evaluation", "inspect-ai")):
            if key in tools and tools[key] != expected:
                self.error(["tools", key], f"tools.{key} is {tools[key]!r}; cruijff runs only {expected}")
            elif key in tools:
                self.note(f"tools.{key}", tools[key], f"always {expected} in cruijff")

    def models(self, m: dict[str, Any]) -> dict[str, str]:
        base = (self.s.get("models") or {}).get("base") if isinstance(self.s.get("models"), dict) else None
        if not isinstance(base, list) or not base:
            self.error(["models"], "models.base must list at least one model", "- {name: Llama-3.2-1B-Instruct, path: ...}")
            return {}
        names: dict[str, str] = {}
        m["models"] = {}
        for i, entry in enumerate(base):
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("path"):
                self.error(["models", "base", i], "each models.base entry needs name and path")
                continue
            family = str(entry["name"])
            if family not in FAMILIES:
                self.error(["models", "base", i, "name"], f"model {family!r} is not in cruijff's registry",
                           f"one of {', '.join(FAMILIES)}; or write a custom family by hand (docs/manifest.md)")
                continue
            short = safe_name(family)
            names[family] = short
            m["models"][short] = {"path": str(entry["path"]), "family": family}
            for key in entry:
                if key not in ("name", "path"):
                    self.note(f"models.base[{i}].{key}", entry[key], "not needed: `cruijff plan` estimates disk from the model folder's weights")
        return names

    def dataset(self, m: dict[str, Any]) -> str:
        data = self.section("data")
        training = data.get("training") or {}
        if not isinstance(training, dict) or not training.get("path"):
            self.error(["data", "training"], "data.training.path is missing", "the training JSON file")
            return "data"
        label = safe_name(training.get("dataset_label") or Path(str(training["path"])).stem)
        fmt = training.get("format", "json")
        if fmt not in ("json", "instruct_json"):
            self.error(["data", "training", "format"], f"data.training.format {fmt!r} cannot be imported",
                       "cruijff_kit's json ({train, validation, test} lists of {input, output}) is instruct_json")
        m["datasets"] = {label: {"path": str(training["path"]), "format": "instruct_json"}}
        if isinstance(training.get("splits"), dict):
            self.note("data.training.splits", training["splits"],
                      "sample counts: cruijff reads the train, validation and test lists of the file")
        if "size_kb" in training:
            self.note("data.training.size_kb", training["size_kb"], "not needed by cruijff")
        if data.get("data_generation"):
            self.note("data.data_generation", data["data_generation"],
                      f"cruijff's generators are {', '.join(sorted(GENERATORS))} (`cruijff data generate`): "
                      "if none of them makes this data, run cruijff_kit's "
                      f"{data['data_generation'].get('tool', 'generator')} first, then point datasets at its output")
        return label

    def controls(self, m: dict[str, Any], label: str) -> dict[str, Any]:
        controls = self.section("controls")
        hp: dict[str, Any] = {}
        prompt: dict[str, Any] = {}
        for key, value in controls.items():
            if key == "system_prompt":
                prompt["system"] = value or None  # "" is no system turn in both tools
            elif key == "prompt":
                prompt["template"] = value
            elif key == "dataset_type":
                if value == "text_completion":
                    prompt["style"] = "text_completion"  # base models: the plain text, no chat template
                    self.out.remarks[("prompt", "style")] = "controls.dataset_type text_completion"
                elif value != "chat_completion":
                    self.note("controls.dataset_type", value, "unknown dataset type; chat is used")
                else:
                    self.out.remarks[("datasets", label, "format")] = "controls.dataset_type chat_completion"
            elif key == "validation_during_training":
                if not value:
                    m["datasets"][label]["splits"] = {"validation": None}
                    self.out.remarks[("datasets", label, "splits")] = "validation_during_training: false"
                else:
                    self.out.remarks[("datasets", label)] = ("validation_during_training: validation loss at each "
                                                             "epoch end (val_every_n_steps for more often)")
            elif key in HYPERPARAMETERS:
                hp[HYPERPARAMETERS[key]] = hp_value(HYPERPARAMETERS[key], value)
            elif key in ("save_adapter_weights_only", "epochs_to_save", "save_last_epoch_only"):
                self.save_choice(key, value)
            else:
                self.note(f"controls.{key}", value, "no cruijff hyperparameter of that name")
        if prompt.get("style") == "text_completion" and prompt.get("system"):
            self.note("controls.system_prompt", prompt.pop("system"),
                      "a text_completion prompt has no system turn: write the instruction into the prompt template")
        if prompt:
            m["prompt"] = {"system": prompt.get("system"), "template": prompt.get("template")}
            if "style" in prompt:
                m["prompt"]["style"] = prompt["style"]
        return hp

    def save_choice(self, key: str, value: Any) -> None:
        """setup_finetune.py's save_adapter_weights_only, epochs_to_save and save_last_epoch_only."""
        try:
            setting = save_setting(key, value)
        except ValueError as e:
            self.error(["controls", key], f"controls.{key}: {value!r} cannot be imported", str(e))
            return
        if setting:  # None: cruijff's default already (merged export, every epoch)
            self.saving[setting[0]] = setting[1]
            self.out.remarks[("finetune", setting[0])] = f"controls.{key}: {value}"

    def runs(self, m: dict[str, Any], models: dict[str, str], label: str, controls_hp: dict[str, Any]) -> None:
        variables = self.section("variables")
        axes: dict[str, list[Any]] = {}
        for key, values in variables.items():
            if key not in HYPERPARAMETERS:
                self.note(f"variables.{key}", values, "not a cruijff hyperparameter: not swept")
                continue
            name = HYPERPARAMETERS[key]
            axes[name] = [hp_value(name, v) for v in (values if isinstance(values, list) else [values])]
        runs = self.s.get("runs") or []
        if not isinstance(runs, list):
            self.error(["runs"], "runs must be a list")
            runs = []
        tuned: list[tuple[str, dict[str, Any], int]] = []
        controls: list[str] = []
        checkpoints: dict[str, dict[str, Any]] = {}  # eval-only runs: models evaluated only
        for i, run in enumerate(runs):
            if not isinstance(run, dict):
                self.error(["runs", i], "each run must be a mapping")
                continue
            kind, model = run.get("type"), run.get("model")
            if model not in models and model is not None:
                self.error(["runs", i, "model"], f"run {run.get('name')!r} uses model {model!r}, not in models.base")
                continue
            if kind == "control":
                controls.append(models[model])
                self.control_runs[str(run.get("name"))] = models[model]
            elif kind == "eval-only":
                self.eval_only(run, i, model, checkpoints)
            elif kind == "fine-tuned":
                params = {}
                for key, value in (run.get("parameters") or {}).items():
                    if key == "prompt":  # a per-run prompt: trained and evaluated with (a prompt variant)
                        params["prompt"] = str(value)
                    elif key in HYPERPARAMETERS:
                        params[HYPERPARAMETERS[key]] = hp_value(HYPERPARAMETERS[key], value)
                    else:
                        self.note(f"runs[{i}].parameters.{key}", value,
                                  "per-run settings other than hyperparameters have no equivalent")
                tuned.append((str(run.get("name")), {"model": models[model], **params}, i))
                if isinstance(run.get("compute"), dict):
                    self.computes.append(run["compute"])
            else:
                self.error(["runs", i, "type"], f"run type {kind!r} is not fine-tuned, control or eval-only")
        evaluation_cells.prompt_variants(self, m, tuned)
        if not tuned and not runs:  # no runs section: the product of the variables over every model
            tuned = [("", {"model": mm, **dict(zip(axes, combo))}, -1)
                     for mm in models.values() for combo in itertools.product(*axes.values())]
        if checkpoints and not tuned and not controls:  # evaluation only: no base model to fine-tune
            m["models"] = {}
        else:
            self.grid(m, models, label, axes, tuned, controls_hp)
        m["models"].update(checkpoints)
        if controls:
            m.setdefault("eval", {})["base_models"] = sorted(set(controls))

    def eval_only(self, run: dict[str, Any], i: int, model: Any, checkpoints: dict[str, dict[str, Any]]) -> None:
        """An eval-only run (a checkpoint trained elsewhere) is a model with `checkpoint:`, evaluated
        by every task and never fine-tuned; its family is its base model's."""
        params = run.get("parameters") or {}
        path = params.get("checkpoint_path") if isinstance(params, dict) else None
        if not path or model is None:
            self.error(["runs", i], f"eval-only run {run.get('name')!r} has no " + ("model" if path else
                       "parameters.checkpoint_path"), "the checkpoint's folder, and model: the base it was tuned from")
            return
        name = safe_name(run.get("name") or f"checkpoint-{i}")
        checkpoints[name] = {"checkpoint": str(path), "family": str(model)}
        self.out.runs[str(run.get("name"))] = name  # a model name (models.<name>.checkpoint), not a run
        self.checkpoint_runs[str(run.get("name"))] = name
        for key, value in params.items():
            if key != "checkpoint_path":
                self.note(f"runs[{i}].parameters.{key}", value, "per-run settings of an eval-only run have no equivalent")

    def grid(self, m: dict[str, Any], models: dict[str, str], label: str, axes: dict[str, list[Any]],
             tuned: list[tuple[str, dict[str, Any], int]], controls_hp: dict[str, Any]) -> None:
        """Variables × models, minus the combinations no run asks for, plus runs outside the product."""
        points = tuned
        keys = list(dict.fromkeys(k for _, p, _ in points for k in p if k != "model"))
        for k in keys:
            if k not in axes:
                axes[k] = list(dict.fromkeys(p[k] for _, p, _ in points if k in p))
        for name, point, i in points:
            for k in keys:
                if k not in point:
                    if k in controls_hp:
                        point[k] = controls_hp[k]
                    else:
                        self.error(["runs", i, "parameters"], f"run {name!r} does not set {k}, which other runs vary",
                                   f"give every fine-tuned run a {k}")
        model_axis = list(dict.fromkeys(p["model"] for _, p, _ in points)) or list(models.values())
        grid: dict[str, Any] = {}
        if model_axis != list(models.values()):
            grid["model"] = model_axis
        grid.update(axes)
        product = [dict(zip(["model", *axes], c)) for c in itertools.product(model_axis, *axes.values())]
        wanted = [p for _, p, _ in points]
        exclude = [c for c in product if c not in wanted]
        include = [p for p in wanted if p not in product]
        if exclude:
            grid["exclude"] = exclude
        if include:
            grid["include"] = include
        if grid:
            m["grid"] = grid
        # A swept key leaves the fixed hyperparameters (the grid sets it per run).
        for k in axes:
            controls_hp.pop(k, None)
        template = template_for([(name, {**point, "dataset": label}) for name, point, _ in points if name])
        if template:  # cruijff_kit's run names, kept: one template gives every one of them
            m["finetune"]["run_name"] = template
            self.out.remarks[("finetune", "run_name")] = "cruijff_kit's runs[].name"
        for name, point, _ in points:
            if name:
                values = {**controls_hp, **point, "dataset": label}
                self.out.runs[name] = render_or_empty(template, values) if template else run_name({**point, "dataset": label})

    def evaluation(self, m: dict[str, Any], label: str) -> None:
        ev = self.section("evaluation")
        if not ev:
            return
        out = m.setdefault("eval", {})
        for key in ("seed", "max_tokens"):
            if key in ev:
                out[key] = as_number(ev[key])
        evaluation_cells.decoding(self, out, ev)
        if "vis_label" in ev:
            self.note("evaluation.vis_label", ev["vis_label"], "no equivalent (run names label the status grid)")
        trained = {"system": (m.get("prompt") or {}).get("system"), "template": (m.get("prompt") or {}).get("template")}
        eval_system = ev.get("system_prompt", trained["system"]) or None  # "" is no system turn in both tools
        if ev.get("scorers"):
            self.note("evaluation.scorers", [s.get("name") if isinstance(s, dict) else s for s in ev["scorers"]],
                      "a cruijff task chooses its scorers in its file (cruijff.tasks: exact_match, "
                      "label_probability, continuous, numeric_risk)")
        scorers = [s.get("name") if isinstance(s, dict) else s for s in ev.get("scorers") or []]
        tasks = []
        crossed: list[str] = []  # tasks evaluated with their own prompt (cruijff_kit: prompt overrides)
        for i, t in enumerate(ev.get("tasks") or []):
            if not isinstance(t, dict) or not t.get("name") or not t.get("script"):
                self.error(["evaluation", "tasks", i], "each evaluation task needs name and script")
                continue
            name = safe_name(t["name"])
            script = str(t["script"])
            function, params = task_function(self.local(script), safe_name(t["name"]).replace("-", "_"))
            entry: dict[str, Any] = {"name": name, "file": script, "task": function}
            if "match" in scorers and "ignore_punctuation" in params:
                # cruijff_kit's match(location="exact") ignores end punctuation ("Apple." is right)
                entry["args"] = {"ignore_punctuation": True}
            dataset = t.get("dataset")
            if dataset and dataset != "same":
                # A task that reads a training file evaluates on that dataset: a second dataset of the
                # same file would be a second grid value, and so twice the fine-tunes.
                known = {self.local(ds["path"]): n for n, ds in m["datasets"].items()}
                ds_name = known.get(self.local(str(dataset)))
                if ds_name is None:
                    ds_name = safe_name(f"{name}-data")
                    m["datasets"][ds_name] = {"path": str(dataset), "format": "instruct_json"}
                    m.setdefault("grid", {}).setdefault("dataset", [label])  # fine-tune on the training data only
                if ds_name != label:
                    entry["dataset"] = ds_name
            tasks.append(entry)
            if "data_path" in params and "config_path" in params and "data" not in params:
                self.out.remarks[("eval", "tasks")] = ("cruijff_kit tasks run unchanged: cruijff passes data_path, "
                                                       "config_path (an eval.yaml of the prompt), vis_label, "
                                                       "use_chat_template (docs/cruijff_kit.md)")
            else:
                self.out.remarks[("eval", "tasks")] = ("cruijff passes data, format, split, template and system to each "
                                                       "task (see experiments/tasks/capitalization.py)"
                                                       + ("; match → ignore_punctuation" if "args" in entry else ""))
            if evaluation_cells.task_prompt(entry, t, trained, eval_system):
                crossed.append(name)
            for key in ("eval_condition", "assistant_prefix", "description"):
                if key in t:
                    self.note(f"evaluation.tasks[{i}].{key}", t[key],
                              "free text" if key == "description" else "no equivalent")
        if crossed:
            self.out.remarks[("eval", "tasks")] += (f"; {', '.join(crossed)}: cruijff_kit evaluates fine-tunes with "
                                                    "the task's own prompt (cross_prompt)")
        if tasks:
            out["tasks"] = tasks
        evaluation_cells.matrix(self, out, ev, [t["name"] for t in tasks])
        if isinstance(ev.get("compute"), dict):
            out["resources"] = {k: as_number(v) if k == "gpus" else str(v)
                                for k, v in ev["compute"].items() if k in ("gpus", "mem", "time")}

    def translate(self) -> Imported:
        m = self.out.manifest
        self.experiment(m)
        models = self.models(m)
        label = self.dataset(m)
        hp = self.controls(m, label)
        m["finetune"] = {}
        if self.problems:
            raise ManifestError(self.problems)
        self.runs(m, models, label, hp)
        m["finetune"].update(self.saving)
        if hp:
            m["finetune"]["hyperparameters"] = hp
        computes = self.computes
        if computes:
            first = computes[0]
            m["finetune"]["resources"] = {k: as_number(v) if k == "gpus" else str(v)
                                          for k, v in first.items() if k in ("gpus", "mem", "time")}
            if any(c != first for c in computes):
                self.note("runs[].compute", computes, "runs ask for different resources: the first run's are used")
        output = self.section("output")
        if output.get("wandb_project"):
            m["finetune"]["wandb"] = {"project": str(output["wandb_project"])}
        for key in output:
            if key != "wandb_project":
                self.note(f"output.{key}", output[key], "no equivalent")
        self.evaluation(m, label)
        if "eval" in m and "tasks" not in m["eval"]:
            self.note("evaluation", "(no tasks)", "an evaluation needs tasks: none imported")
            del m["eval"]
        for key in self.s:
            if key not in ("experiment", "tools", "variables", "controls", "models", "data", "output", "runs",
                           "evaluation"):
                self.note(key, self.s[key], "not part of cruijff_kit's template; not imported")
        if self.problems:
            raise ManifestError(self.problems)
        order = ["hyperparameters", "save_epochs", "export", "run_name", "resources", "wandb"]
        m["finetune"] = dict(sorted(m["finetune"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
        ordered = ["experiment", "description", "output_dir", "models", "datasets", "prompt", "prompts", "finetune", "grid",
                   "eval"]
        self.out.manifest = {k: m[k] for k in ordered if k in m}
        return self.out


def translate(source: Source) -> Imported:
    """The manifest for a loaded experiment_summary.yaml; ManifestError (file:line:col) if it cannot be."""
    if not set(hyperparameter_names()) >= set(HYPERPARAMETERS.values()):  # pragma: no cover - a rename
        raise AssertionError("kit_import.HYPERPARAMETERS names a hyperparameter the schema lacks")
    return _Translator(source).translate()
