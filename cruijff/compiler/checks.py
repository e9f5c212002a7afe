"""Semantic checks the schema cannot express, each reported at its file:line:col."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from cruijff.errors import Problem
from cruijff.compiler.checkpoints import (checkpoint_named, check_checkpoint_folder, check_evaluation_only,
                                         check_path_or_checkpoint, trainable_models)
from cruijff.compiler.expand import Run, axes_of
from cruijff.compiler.families import CUSTOM, FAMILIES, family_names
from cruijff.compiler.resolve import HYPERPARAMETER_DEFAULTS
from cruijff.compiler.schema import load_schema, subschema
from cruijff.compiler.source import Source
from cruijff.compiler.taskfile import check_tasks
from cruijff.compiler.validate import _choices_hint, strict_validator


def resolve_epochs(selection: Any, epochs: int, saved: list[int] | None = None) -> list[int]:
    """A save_epochs/eval.epochs selection as a sorted list of 0-based epochs (none: no epoch)."""
    if selection == "none":
        return []
    if selection == "all":
        return list(saved) if saved is not None else list(range(epochs))
    if selection == "last":
        return [epochs - 1]
    return sorted(selection)


def hyperparameters_of(manifest: dict[str, Any], run: Run) -> dict[str, Any]:
    hp = dict(manifest["finetune"]["hyperparameters"])
    hp.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in run.point
               if k not in ("model", "dataset", "prompt")})  # prompt: a prompt variant (cruijff.compiler.cells)
    return hp


def check_references(source: Source, m: dict[str, Any]) -> list[Problem]:
    """Grid, include/exclude, base_models and task datasets must name declared things."""
    problems: list[Problem] = []
    models, datasets = trainable_models(m), list(m["datasets"])
    grid = m["grid"]
    declared = {"model": models, "dataset": datasets}
    for axis in ("model", "dataset"):
        for i, name in enumerate(grid.get(axis, [])):
            named = checkpoint_named(source, m, name, ["grid", axis, i], f"grid.{axis}") if axis == "model" else None
            if named:
                problems.append(named)
            elif name not in declared[axis]:
                problems.append(Problem(f"grid.{axis} names '{name}', which is not declared under {axis}s",
                                        source.locate(["grid", axis, i]), _choices_hint(declared[axis], name)))
    axes = axes_of(grid, models, datasets)
    hp_names = list(HYPERPARAMETER_DEFAULTS)
    schema = load_schema()
    variants = ["prompt"] if m.get("prompts") else []
    for section, allowed in (("exclude", list(axes)), ("include", ["model", "dataset", *variants, *hp_names])):
        for i, entry in enumerate(grid.get(section, [])):
            for key, value in entry.items():
                where = ["grid", section, i, key]
                if key not in allowed:
                    why = ("exclude keys must be grid axes" if section == "exclude"
                           else "include keys must be model, dataset or a hyperparameter")
                    problems.append(Problem(f"grid.{section}[{i}] has unknown key '{key}' ({why})",
                                            source.locate(where, key=True), _choices_hint(allowed, key)))
                elif key == "prompt":
                    pass  # a prompt variant's name: cruijff.compiler.cells.check_prompts
                elif key in declared:
                    named = checkpoint_named(source, m, value, where, f"grid.{section}[{i}].{key}") \
                        if key == "model" else None
                    if named:
                        problems.append(named)
                    elif value not in declared[key]:
                        problems.append(Problem(f"grid.{section}[{i}].{key} names '{value}', which is not declared",
                                                source.locate(where), _choices_hint(declared[key], str(value))))
                else:
                    sub = {"$defs": schema["$defs"], "$ref": f"#/$defs/hyperparameters/properties/{key}"}
                    for err in strict_validator()(sub).iter_errors(value):
                        problems.append(Problem(f"grid.{section}[{i}].{key}: {err.message}", source.locate(where),
                                                subschema(f"#/$defs/hyperparameters/properties/{key}").get("description")))
    ev = m.get("eval")
    if ev:
        if isinstance(ev["base_models"], list):
            for i, name in enumerate(ev["base_models"]):
                named = checkpoint_named(source, m, name, ["eval", "base_models", i], "eval.base_models")
                if named:
                    problems.append(named)
                elif name not in models:
                    problems.append(Problem(f"eval.base_models names '{name}', which is not declared under models",
                                            source.locate(["eval", "base_models", i]), _choices_hint(models, name)))
        seen: set[str] = set()
        for i, task in enumerate(ev["tasks"]):
            if task["name"] in seen:
                problems.append(Problem(f"two eval tasks are named '{task['name']}'",
                                        source.locate(["eval", "tasks", i, "name"]), "give each task its own name"))
            seen.add(task["name"])
            if "dataset" in task and task["dataset"] not in datasets:
                problems.append(Problem(f"eval task '{task['name']}' names dataset '{task['dataset']}', which is not declared",
                                        source.locate(["eval", "tasks", i, "dataset"]), _choices_hint(datasets, task["dataset"])))
    from cruijff.data.generate import check_options

    for name, ds in m["datasets"].items():
        if "generate" in ds:
            for message in check_options(ds["generate"]["kind"], ds["generate"]):
                problems.append(Problem(f"datasets.{name}.generate: {message}",
                                        source.locate(["datasets", name, "generate"]),
                                        f"see `cruijff data generate {ds['generate']['kind']} --help`"))
    problems += _check_text_completion(source, m)
    problems += check_evaluation_only(source, m)
    env = m["cluster"].get("env", {})
    if "conda" in env and "venv" in env:
        problems.append(Problem("cluster.env gives both conda and venv", source.locate(["cluster", "env", "venv"], key=True),
                                "keep one of them"))
    return problems


def _check_text_completion(source: Source, m: dict[str, Any]) -> list[Problem]:
    """prompt.style text_completion: a plain-text prompt from instruct rows, evaluated by hf.

    A system prompt is refused rather than folded into the text: there is no one right way to
    fold it for a base model, and the template can say it explicitly.
    """
    if m["prompt"].get("style") != "text_completion":
        return []
    problems = []
    if m["prompt"].get("system"):
        problems.append(Problem("prompt.system is set, but a text_completion prompt has no system turn",
                                source.locate(["prompt", "system"]),
                                "write the instruction into prompt.template (before {input}) and remove prompt.system"))
    for name, ds in m["datasets"].items():
        if ds["format"] == "chat_json":
            problems.append(Problem(f"dataset '{name}' is chat_json, but prompt.style text_completion builds the "
                                    "prompt from instruct rows (input/output)", source.locate(["datasets", name, "format"]),
                                    "use instruct_json or parquet data with input/output, or prompt.style: chat"))
    if m["eval"]["provider"] != "hf":
        problems.append(Problem(f"prompt.style text_completion is evaluated with the hf provider only, not "
                                f"{m['eval']['provider']}", source.locate(["eval", "provider"]),
                                "set eval.provider: hf (its prompts are token-identical with training; docs/parity.md)"))
    return problems


def check_models(source: Source, m: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name, model in m["models"].items():
        family = model["family"]
        problems += check_path_or_checkpoint(source, name, model)
        if family not in family_names():
            problems.append(Problem(f"model '{name}' has unknown family '{family}'",
                                    source.locate(["models", name, "family"]), _choices_hint(family_names(), family)))
            continue
        custom_keys = ("builder", "checkpoint_files", "model_type")
        if "tokenizer" in model:  # before token-exact parity, custom models named a torchtune tokenizer
            problems.append(Problem(f"model '{name}': 'tokenizer' is ignored; training uses the model "
                                    "folder's own Hugging Face tokenizer and chat template, as evaluation does",
                                    source.locate(["models", name, "tokenizer"], key=True),
                                    "remove it (see docs/parity.md)", severity="warning"))
        if family == CUSTOM and "checkpoint" not in model:  # a checkpoint is not built by torchtune
            for key in custom_keys:
                if key not in model:
                    problems.append(Problem(f"model '{name}' of family custom needs '{key}'",
                                            source.locate(["models", name], key=True),
                                            f"add {key}: ... (see docs/manifest.md#model)"))
        else:
            for key in custom_keys:
                if key in model:
                    problems.append(Problem(f"'{key}' is only for family custom; {family} comes from the registry",
                                            source.locate(["models", name, key], key=True),
                                            "remove it, or set family: custom"))
    return problems


def check_runs(source: Source, m: dict[str, Any], runs: list[Run]) -> list[Problem]:
    """Per run: saved epochs exist, evaluated epochs are saved, GPUs fit the model."""
    problems: list[Problem] = []
    ft = m["finetune"]
    reported: set[tuple] = set()

    def once(key: tuple, problem: Problem) -> None:
        if key not in reported:
            reported.add(key)
            problems.append(problem)

    for run in runs:
        hp = hyperparameters_of(m, run)
        epochs = hp["epochs"]
        saved = resolve_epochs(ft["save_epochs"], epochs)
        too_late = [e for e in saved if e >= epochs]
        if too_late:
            once(("save", tuple(too_late), epochs), Problem(
                f"finetune.save_epochs asks for epoch {too_late[0]}, but run '{run.name}' trains {epochs} epoch(s) (0-based: 0..{epochs - 1})",
                source.locate(["finetune", "save_epochs"]), f"use epochs below {epochs}, or 'last'"))
        # (with eval.matrix, its rows are checked by cruijff.compiler.cells)
        if m.get("eval") and ft["save_epochs"] != "none" and "matrix" not in m["eval"]:
            wanted = resolve_epochs(m["eval"]["epochs"], epochs, saved=[e for e in saved if e < epochs])
            unsaved = [e for e in wanted if e not in saved]
            if unsaved:
                once(("eval", tuple(unsaved), tuple(saved)), Problem(
                    f"eval.epochs evaluates epoch {unsaved[0]} of run '{run.name}', which is not saved (saved: {saved})",
                    source.locate(["eval", "epochs"]), "add it to finetune.save_epochs, or evaluate a saved epoch"))
        model = m["models"].get(run.model)
        family = FAMILIES.get(model["family"]) if model else None
        if family:
            gpus = {**ft["resources"], **model.get("resources", {})}.get("gpus", family.finetune.gpus)
            if 0 < gpus < family.min_gpus:
                where = (["models", run.model, "resources", "gpus"] if "gpus" in model.get("resources", {})
                         else ["finetune", "resources", "gpus"])
                once(("gpus", run.model), Problem(
                    f"model '{run.model}' ({family.name}) needs at least {family.min_gpus} GPUs, but {gpus} are requested",
                    source.locate(where), family.notes or f"request gpus: {family.min_gpus} or more"))
    return problems + _check_saves(source, m, runs)


def _check_saves(source: Source, m: dict[str, Any], runs: list[Run]) -> list[Problem]:
    """save_epochs none (runs only trained: said, since their evaluations disappear) and export."""
    ft, ev = m["finetune"], m.get("eval")
    problems = []
    if ft["save_epochs"] == "none" and runs:
        base = ev and ev["base_models"]
        problems.append(Problem(
            f"finetune.save_epochs is none: the {len(runs)} run(s) are only trained (no checkpoint saved)"
            + (", and none of them is evaluated" + ("; the base models still are" if base else "") if ev else ""),
            source.locate(["finetune", "save_epochs"]),
            "save an epoch (all, last or a list) to evaluate the runs", severity="warning"))
    if ft.get("export") == "adapter" and ev and ev["provider"] == "vllm" and ft["save_epochs"] != "none":
        problems.append(Problem(
            "finetune.export adapter is evaluated through PEFT, which the vllm provider does not do",
            source.locate(["finetune", "export"]), "export: both (vllm evaluates the merged model), or eval.provider: hf"))
    return problems


LOCAL_HINT = ("with executor: local every job runs on this machine, so it must exist here: fix the path "
              "(relative to the manifest's folder) or create it first")


def unreachable(source: Source, m: dict[str, Any], what: str, where: list[Any], *, later: str) -> Problem:
    """A file or folder not reachable from here: a warning on a cluster, an error where jobs run here."""
    if m["executor"]["kind"] == "local":
        return Problem(f"{what} does not exist", source.locate(where), LOCAL_HINT)
    return Problem(f"{what} is not reachable from here; {later}", source.locate(where),
                   "fine if it exists on the cluster", severity="warning")


def check_model_folders(source: Source, m: dict[str, Any]) -> list[Problem]:
    """Each model folder reachable here holds config.json, a tokenizer and its checkpoint files."""
    from cruijff.compiler.modelfiles import missing, near_names, needs

    problems: list[Problem] = []
    for name, model in m["models"].items():
        if "checkpoint" in model:
            problems += check_checkpoint_folder(source, m, name)
            continue
        if "path" not in model:
            continue  # check_models says so
        folder, where = model["path"], ["models", name, "path"]
        if not os.path.isdir(folder):
            if os.path.exists(folder):
                problems.append(Problem(f"model '{name}': {folder} is a file, not a model folder",
                                        source.locate(where), "give the folder that holds config.json"))
                continue
            problem = unreachable(source, m, f"model '{name}': {folder}", where,
                                  later="checked when the job starts")
            near = near_names(folder)
            if near:
                problem = replace(problem, hint=f"did you mean {' or '.join(near)}? ({problem.hint})")
            problems.append(problem)
            continue
        gone = missing(folder, needs(model))
        if gone:
            key = "checkpoint_files" if "checkpoint_files" in model else "family"
            problems.append(Problem(
                f"model '{name}': {folder} has no {', '.join(gone)}", source.locate(where),
                "give the folder of a Hugging Face model (config.json, tokenizer, weights); "
                f"the weight files are those its {key} names (see docs/manifest.md#model)"))
    return problems


def check_files(source: Source, m: dict[str, Any]) -> list[Problem]:
    """Models, datasets and task files that can be seen from here must be right; unreachable ones warn
    (on a cluster) or are errors (executor local: the jobs run here)."""
    problems: list[Problem] = check_model_folders(source, m)
    for name, ds in m["datasets"].items():
        if "generate" in ds:
            from cruijff.data.generate import path_options

            for key in path_options(ds["generate"]["kind"], reads=True):
                value = ds["generate"].get(key)
                if value is not None and not isinstance(value, str):
                    problems.append(Problem(f"dataset '{name}': generate.{key} must be a file path, not {value!r}",
                                            source.locate(["datasets", name, "generate", key]),
                                            f"write the path of the {key} file"))
                elif value and not Path(value).exists():
                    problems.append(unreachable(source, m, f"dataset '{name}': generate.{key} {value}",
                                                ["datasets", name, "generate", key], later="not checked"))
            continue
        path = Path(ds["path"])
        where = ["datasets", name, "path"]
        if not path.exists():
            problems.append(unreachable(source, m, f"dataset '{name}': {path}", where, later="not checked"))
            continue
        problems.extend(_check_dataset(source, name, ds, where))
    problems += check_tasks(source, m)
    return problems


def _dataset_info(path: str, fmt: str):
    """inspect_dataset, read once per compile (check_files and check_steps both ask)."""
    from cruijff.data.formats import inspect_dataset

    try:
        st = os.stat(path)
        key = (path, fmt, st.st_size, st.st_mtime_ns)
    except OSError:
        key = (path, fmt, None, None)
    if key not in _INFO:
        if len(_INFO) > 64:
            _INFO.clear()
        _INFO[key] = inspect_dataset(path, fmt)
    return _INFO[key]


_INFO: dict[tuple, Any] = {}
MIN_STEPS = 10  # below this a schedule (warm-up, cosine) hardly applies and the run is likely a mistake


def check_steps(source: Source, m: dict[str, Any], runs: list[Run]) -> list[Problem]:
    """Optimizer steps per run, from the train split's row count where the data exists now. torchtune
    splits the rows over the GPUs, drops an incomplete last batch and steps once per
    gradient_accumulation_steps batches. Warnings: a smoke test on a few rows is fair to plan."""
    from cruijff.errors import CruijffError
    from cruijff.compiler.graph import finetune_resources

    few: dict[tuple, list[str]] = {}
    splits: dict[str, dict | None] = {}  # dataset → its splits' row counts (read once, not once a run)
    for run in runs:
        ds = m["datasets"][run.dataset]
        if "generate" in ds:
            continue
        if run.dataset not in splits:
            try:
                splits[run.dataset] = _dataset_info(ds["path"], ds["format"]).splits
            except (CruijffError, OSError, ImportError):
                splits[run.dataset] = None  # reported by check_files, or not reachable from here
        rows = (splits[run.dataset] or {}).get(ds["splits"]["train"])
        if rows is None:
            continue
        hp = hyperparameters_of(m, run)
        gpus = max(1, finetune_resources(m, run.model).gpus)
        per_device = -(-rows // gpus)
        steps = (per_device // hp["batch_size"]) // hp["gradient_accumulation_steps"]
        if hp["max_steps_per_epoch"]:
            steps = min(steps, hp["max_steps_per_epoch"])
        total = steps * hp["epochs"]
        if total < MIN_STEPS or hp["warmup_steps"] >= max(total, 1):
            key = (run.dataset, rows, hp["batch_size"], hp["gradient_accumulation_steps"], gpus, hp["epochs"],
                   total, hp["warmup_steps"], bool(hp["packed"]))
            few.setdefault(key, []).append(run.name)
    problems = []
    for (dataset, rows, bs, ga, gpus, epochs, total, warmup, packed), names in few.items():
        who = f"run '{names[0]}'" + (f" (and {len(names) - 1} more)" if len(names) > 1 else "")
        how = (f"{rows} training rows of '{dataset}' / (batch_size {bs} × gradient_accumulation_steps {ga}"
               f"{f' × {gpus} GPUs' if gpus > 1 else ''}), incomplete batches dropped, × {epochs} epoch(s)")
        where = source.locate(["grid", "batch_size"] if "batch_size" in m["grid"]
                              else ["finetune", "hyperparameters", "batch_size"])
        if total == 0 and not packed:
            problems.append(Problem(f"{who} would make no optimizer step: {how} = 0", where,
                                    "lower batch_size or gradient_accumulation_steps, or add training rows",
                                    severity="warning"))
        elif total < MIN_STEPS:
            problems.append(Problem(f"{who} makes only {total} optimizer step(s): {how}"
                                    + (" (before packing)" if packed else ""), where,
                                    f"fewer than {MIN_STEPS} steps is rarely a real fine-tune: lower batch_size or "
                                    "gradient_accumulation_steps, or add epochs or data", severity="warning"))
        if warmup >= max(total, 1) and (total > 0 or packed):
            problems.append(Problem(f"{who}: warmup_steps {warmup} ≥ its {total} optimizer step(s), so the "
                                    "learning rate never reaches its peak", where,
                                    "lower warmup_steps", severity="warning"))
    return problems


def _check_dataset(source: Source, name: str, ds: dict[str, Any], where: list[Any]) -> list[Problem]:
    from cruijff.errors import CruijffError

    try:
        import cruijff.data.formats  # noqa: F401
    except ImportError:  # the data kit is optional for planning
        return []
    try:
        info = _dataset_info(ds["path"], ds["format"])
    except CruijffError as e:
        return [Problem(f"dataset '{name}': {e.message}", source.locate(where), e.hint)]
    problems = []
    for role, split in ds["splits"].items():
        if split is not None and split not in info.splits:
            key = ["datasets", name, "splits", role] if role in (source.data["datasets"][name].get("splits") or {}) else where
            problems.append(Problem(
                f"dataset '{name}' has no {role} split '{split}' (it has: {', '.join(info.splits) or 'none'})",
                source.locate(key), f"set splits.{role} to one of them" + (", or null" if role != "train" else "")))
    return problems
