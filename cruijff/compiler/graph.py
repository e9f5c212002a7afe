"""Runs → the job graph: data preparation → fine-tune → evaluations; base evaluations.

Nodes carry only what rendering needs. The graph is built parents first (adding a node whose parent
is not there yet is a bug, and raises), so its insertion order is a topological order, and a stable
one: it drives rendering and submission. A plain ordered mapping holds it: networkx cost 0.17–0.25 s
of import on every compile (half the time budget of a 500-job plan) for an order the builder
already has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cruijff.compiler import cells
from cruijff.compiler.checkpoints import checkpoint_models, trainable_models
from cruijff.compiler.checks import hyperparameters_of, resolve_epochs
from cruijff.compiler.expand import Run, axes_of
from cruijff.plan import BASE_EVAL, CHECKPOINT_EVAL, EVAL, FINETUNE, PREPARE, Resources
from cruijff.compiler.families import CUSTOM, CUSTOM_DEFAULTS, FAMILIES

PREPARE_RESOURCES = Resources(gpus=0, cpus=1, mem="8G", time="01:00:00")


@dataclass(frozen=True)
class JobSpec:
    id: str
    kind: str
    resources: Resources
    attrs: dict[str, Any] = field(default_factory=dict)


def _merge(defaults: Resources, *overrides: dict[str, Any]) -> Resources:
    values = defaults.as_dict()
    for o in overrides:
        values.update({k: v for k, v in o.items() if v is not None})
    return Resources(**values)


def finetune_resources(m: dict[str, Any], model_name: str) -> Resources:
    model = m["models"][model_name]
    defaults = CUSTOM_DEFAULTS[0] if model["family"] == CUSTOM else FAMILIES[model["family"]].finetune
    return _merge(defaults, m["finetune"]["resources"], model.get("resources", {}))


def eval_resources(m: dict[str, Any], model_name: str) -> Resources:
    model = m["models"][model_name]
    defaults = CUSTOM_DEFAULTS[1] if model["family"] == CUSTOM else FAMILIES[model["family"]].eval
    return _merge(defaults, m["eval"]["resources"])


def eval_datasets(m: dict[str, Any], runs: list[Run]) -> dict[str, list[str]]:
    """Per model, the datasets its runs train on (base models are evaluated on each)."""
    out: dict[str, list[str]] = {}
    for run in runs:
        out.setdefault(run.model, [])
        if run.dataset not in out[run.model]:
            out[run.model].append(run.dataset)
    return out


@dataclass
class JobGraph:
    """Job specs in topological order (insertion order) and each job's parents, in their order."""

    specs: dict[str, JobSpec] = field(default_factory=dict)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, spec: JobSpec, parents: list[str]) -> None:
        missing = [p for p in parents if p not in self.specs]
        if missing or spec.id in self.specs:
            raise ValueError(f"job graph: {spec.id} added twice or before its parents {missing}")
        self.specs[spec.id] = spec
        self.parents[spec.id] = tuple(dict.fromkeys(parents))


def build_graph(m: dict[str, Any], runs: list[Run]) -> JobGraph:
    g = JobGraph()
    ft = m["finetune"]
    ev = m.get("eval")
    memo: dict[tuple[str, str], Resources] = {}  # the same for every job of a kind and model

    def resources(kind: str, model: str) -> Resources:
        if (kind, model) not in memo:
            memo[kind, model] = (finetune_resources if kind == FINETUNE else eval_resources)(m, model)
        return memo[kind, model]

    add = g.add

    prepare: dict[str, str] = {}
    for name, ds in m["datasets"].items():
        if "generate" in ds:
            prepare[name] = f"{PREPARE}/{name}"
            add(JobSpec(prepare[name], PREPARE, PREPARE_RESOURCES, {"dataset": name}), [])

    def data_parents(dataset: str) -> list[str]:
        return [prepare[dataset]] if dataset in prepare else []

    for run in runs:
        hp = hyperparameters_of(m, run)
        saved = resolve_epochs(ft["save_epochs"], hp["epochs"])
        grid_point = {k: (list(v) if isinstance(v, tuple) else v) for k, v in run.point}
        ft_id = f"{FINETUNE}/{run.name}"
        common = {"run": run.name, "model": run.model, "dataset": run.dataset, "grid": grid_point,
                  "hyperparameters": hp}
        add(JobSpec(ft_id, FINETUNE, resources(FINETUNE, run.model), {**common, "save_epochs": saved}),
            data_parents(run.dataset))
        if not ev or not saved:  # save_epochs none: the run is only trained
            continue
        for cell in cells.run_cells(m, run, saved):
            epoch, task = cell.epoch, cell.task
            dataset = task.get("dataset", run.dataset)
            crossed = cells.cross_prompt(m, run, task)
            extra = {"cross_prompt": {"trained": crossed[0], "evaluated": crossed[1]}} if crossed else {}
            add(JobSpec(f"{EVAL}/{run.name}/epoch_{epoch}/{task['name']}", EVAL,
                        resources(EVAL, run.model),
                        {**common, "epoch": epoch, "task": task["name"], "eval_dataset": dataset, **extra}),
                [ft_id, *[p for p in data_parents(dataset) if p not in data_parents(run.dataset)]])

    per_model = eval_datasets(m, runs)
    checkpoints = checkpoint_models(m)  # models fine-tuned elsewhere: evaluated as they are
    base = cells.base_cells(m, runs)
    for model, task in base:
        if model in checkpoints:
            continue
        datasets = [task["dataset"]] if "dataset" in task else per_model.get(model, [next(iter(m["datasets"]))])
        for dataset in datasets:
            add(JobSpec(f"{BASE_EVAL}/{model}/{dataset}/{task['name']}", BASE_EVAL,
                        resources(EVAL, model),
                        {"model": model, "dataset": dataset, "eval_dataset": dataset, "task": task["name"]}),
                data_parents(dataset))
    if ev and checkpoints:  # each task (or a matrix's `base_model` rows) on each of the grid's datasets
        grid_datasets = axes_of(m["grid"], trainable_models(m), list(m["datasets"]))["dataset"]
        for model in checkpoints:
            tasks = ev["tasks"] if ev.get("matrix") is None else [t for name, t in base if name == model]
            for task in tasks:
                for dataset in [task["dataset"]] if "dataset" in task else grid_datasets:
                    add(JobSpec(f"{CHECKPOINT_EVAL}/{model}/{dataset}/{task['name']}", CHECKPOINT_EVAL,
                                resources(EVAL, model),
                                {"model": model, "dataset": dataset, "eval_dataset": dataset, "task": task["name"],
                                 "checkpoint": m["models"][model]["checkpoint"]}),
                        data_parents(dataset))
    return g
