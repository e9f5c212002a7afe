"""Semantic checks the schema cannot express, each reported at its file:line:col."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from cruijff.errors import Problem
from cruijff.expand import Run, axes_of
from cruijff.registry import CUSTOM, FAMILIES, family_names
from cruijff.resolve import HYPERPARAMETER_DEFAULTS
from cruijff.schema import load_schema, subschema
from cruijff.source import Source
from cruijff.validate import _choices_hint


def resolve_epochs(selection: Any, epochs: int, saved: list[int] | None = None) -> list[int]:
    """A save_epochs/eval.epochs selection as a sorted list of 0-based epochs."""
    if selection == "all":
        return list(saved) if saved is not None else list(range(epochs))
    if selection == "last":
        return [epochs - 1]
    return sorted(selection)


def hyperparameters_of(manifest: dict[str, Any], run: Run) -> dict[str, Any]:
    hp = dict(manifest["finetune"]["hyperparameters"])
    hp.update({k: (list(v) if isinstance(v, tuple) else v) for k, v in run.point if k not in ("model", "dataset")})
    return hp


def check_references(source: Source, m: dict[str, Any]) -> list[Problem]:
    """Grid, include/exclude, base_models and task datasets must name declared things."""
    problems: list[Problem] = []
    models, datasets = list(m["models"]), list(m["datasets"])
    grid = m["grid"]
    declared = {"model": models, "dataset": datasets}
    for axis in ("model", "dataset"):
        for i, name in enumerate(grid.get(axis, [])):
            if name not in declared[axis]:
                problems.append(Problem(f"grid.{axis} names '{name}', which is not declared under {axis}s",
                                        source.locate(["grid", axis, i]), _choices_hint(declared[axis], name)))
    axes = axes_of(grid, models, datasets)
    hp_names = list(HYPERPARAMETER_DEFAULTS)
    schema = load_schema()
    for section, allowed in (("exclude", list(axes)), ("include", ["model", "dataset", *hp_names])):
        for i, entry in enumerate(grid.get(section, [])):
            for key, value in entry.items():
                where = ["grid", section, i, key]
                if key not in allowed:
                    why = ("exclude keys must be grid axes" if section == "exclude"
                           else "include keys must be model, dataset or a hyperparameter")
                    problems.append(Problem(f"grid.{section}[{i}] has unknown key '{key}' ({why})",
                                            source.locate(where, key=True), _choices_hint(allowed, key)))
                elif key in declared:
                    if value not in declared[key]:
                        problems.append(Problem(f"grid.{section}[{i}].{key} names '{value}', which is not declared",
                                                source.locate(where), _choices_hint(declared[key], str(value))))
                else:
                    sub = {"$defs": schema["$defs"], "$ref": f"#/$defs/hyperparameters/properties/{key}"}
                    for err in Draft202012Validator(sub).iter_errors(value):
                        problems.append(Problem(f"grid.{section}[{i}].{key}: {err.message}", source.locate(where),
                                                subschema(f"#/$defs/hyperparameters/properties/{key}").get("description")))
    ev = m.get("eval")
    if ev:
        if isinstance(ev["base_models"], list):
            for i, name in enumerate(ev["base_models"]):
                if name not in models:
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
    env = m["cluster"].get("env", {})
    if "conda" in env and "venv" in env:
        problems.append(Problem("cluster.env gives both conda and venv", source.locate(["cluster", "env", "venv"], key=True),
                                "keep one of them"))
    return problems


def check_models(source: Source, m: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    for name, model in m["models"].items():
        family = model["family"]
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
        if family == CUSTOM:
            for key in custom_keys:
                if key not in model:
                    problems.append(Problem(f"model '{name}' of family custom needs '{key}'",
                                            source.locate(["models", name], key=True),
                                            f"add {key}: ... (see docs/manifest.md, custom models)"))
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
        if m.get("eval"):
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
    return problems


def check_files(source: Source, m: dict[str, Any]) -> list[Problem]:
    """Datasets and task files that can be seen from here must be right; unreachable ones only warn."""
    problems: list[Problem] = []
    for name, ds in m["datasets"].items():
        if "generate" in ds:
            continue
        path = Path(ds["path"])
        where = ["datasets", name, "path"]
        if not path.exists():
            problems.append(Problem(f"dataset '{name}': {path} is not reachable from here; not checked",
                                    source.locate(where), "fine if it exists on the cluster", severity="warning"))
            continue
        problems.extend(_check_dataset(source, name, ds, where))
    for i, task in enumerate(m.get("eval", {}).get("tasks", [])):
        if not Path(task["file"]).exists():
            problems.append(Problem(f"eval task file {task['file']} is not reachable from here; not checked",
                                    source.locate(["eval", "tasks", i, "file"]), "fine if it exists on the cluster",
                                    severity="warning"))
    return problems


def _check_dataset(source: Source, name: str, ds: dict[str, Any], where: list[Any]) -> list[Problem]:
    from cruijff.errors import CruijffError

    try:
        from cruijff.data.formats import inspect_dataset
    except ImportError:  # the data kit is optional for planning
        return []
    try:
        info = inspect_dataset(ds["path"], ds["format"])
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
