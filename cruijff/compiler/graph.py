"""Runs → the job graph: data preparation → fine-tune → evaluations; base evaluations.

Nodes carry only what rendering needs; topological order (ties broken by insertion order, so the
order is stable) drives rendering and submission. The graph is a small DAG of its own (networkx
took 0.13 s of every `cruijff plan` just to import, for three operations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import heapq

from cruijff.compiler.checks import hyperparameters_of, resolve_epochs
from cruijff.compiler.expand import Run
from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, PREPARE, Resources
from cruijff.compiler.families import CUSTOM, CUSTOM_DEFAULTS, FAMILIES

PREPARE_RESOURCES = Resources(gpus=0, cpus=1, mem="8G", time="01:00:00")


class DiGraph:
    """The few operations of networkx.DiGraph the compiler uses: nodes[id] (attributes),
    add_node, add_edge, predecessors, number_of_nodes."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self._parents: dict[str, list[str]] = {}
        self._children: dict[str, list[str]] = {}

    def add_node(self, node: str, **attrs: Any) -> None:
        self.nodes.setdefault(node, {}).update(attrs)
        self._parents.setdefault(node, [])
        self._children.setdefault(node, [])

    def add_edge(self, parent: str, child: str) -> None:
        for n in (parent, child):
            if n not in self.nodes:
                self.add_node(n)
        if parent not in self._parents[child]:
            self._parents[child].append(parent)
            self._children[parent].append(child)

    def predecessors(self, node: str) -> list[str]:
        return list(self._parents[node])

    def successors(self, node: str) -> list[str]:
        return list(self._children[node])

    def number_of_nodes(self) -> int:
        return len(self.nodes)

    def __contains__(self, node: str) -> bool:
        return node in self.nodes


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


def build_graph(m: dict[str, Any], runs: list[Run]) -> DiGraph:
    g = DiGraph()
    ft = m["finetune"]
    ev = m.get("eval")
    memo: dict[tuple[str, str], Resources] = {}  # the same for every job of a kind and model

    def finetune_resources(m: dict[str, Any], model: str) -> Resources:
        if ("ft", model) not in memo:
            memo["ft", model] = _finetune_resources(m, model)
        return memo["ft", model]

    def eval_resources(m: dict[str, Any], model: str) -> Resources:
        if ("ev", model) not in memo:
            memo["ev", model] = _eval_resources(m, model)
        return memo["ev", model]

    def add(spec: JobSpec, parents: list[str]) -> None:
        g.add_node(spec.id, spec=spec, order=g.number_of_nodes())
        for p in parents:
            g.add_edge(p, spec.id)

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
        add(JobSpec(ft_id, FINETUNE, finetune_resources(m, run.model), {**common, "save_epochs": saved}),
            data_parents(run.dataset))
        if not ev:
            continue
        for epoch in resolve_epochs(ev["epochs"], hp["epochs"], saved=saved):
            for task in ev["tasks"]:
                dataset = task.get("dataset", run.dataset)
                add(JobSpec(f"{EVAL}/{run.name}/epoch_{epoch}/{task['name']}", EVAL,
                            eval_resources(m, run.model),
                            {**common, "epoch": epoch, "task": task["name"], "eval_dataset": dataset}),
                    [ft_id, *[p for p in data_parents(dataset) if p not in data_parents(run.dataset)]])

    if ev and ev["base_models"]:
        per_model = eval_datasets(m, runs)
        wanted = list(per_model) if ev["base_models"] is True else list(ev["base_models"])
        for model in wanted:
            for task in ev["tasks"]:
                datasets = [task["dataset"]] if "dataset" in task else per_model.get(model, [next(iter(m["datasets"]))])
                for dataset in datasets:
                    add(JobSpec(f"{BASE_EVAL}/{model}/{dataset}/{task['name']}", BASE_EVAL,
                                eval_resources(m, model),
                                {"model": model, "dataset": dataset, "eval_dataset": dataset, "task": task["name"]}),
                        data_parents(dataset))
    return g


def topological(g: DiGraph) -> list[str]:
    """Kahn's algorithm, the ready node added first going first (networkx's
    lexicographical_topological_sort keyed by insertion order)."""
    order = {n: i for i, n in enumerate(g.nodes)}
    waiting = {n: len(g._parents[n]) for n in g.nodes}
    ready = [(order[n], n) for n, k in waiting.items() if k == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, n = heapq.heappop(ready)
        out.append(n)
        for c in g._children[n]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (order[c], c))
    if len(out) != len(g.nodes):
        raise ValueError("the job graph has a cycle")
    return out


_finetune_resources, _eval_resources = finetune_resources, eval_resources
