"""The plan as plain frozen data: what every stage after expansion hands to the next.

A Plan is what `plan.json` holds (see cruijff.artifact); executors, state and status read only this.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Node kinds. Ids are also the node's directory relative to the plan's output_dir.
FINETUNE = "finetune"  # finetune/<run>
EVAL = "eval"  # eval/<run>/epoch_<n>/<task>
BASE_EVAL = "base_eval"  # base_eval/<model>/<task>
PREPARE = "prepare"  # prepare/<dataset>  (data preparation before training)
NODE_KINDS = (PREPARE, FINETUNE, EVAL, BASE_EVAL)


@dataclass(frozen=True)
class Resources:
    """What one job asks the scheduler for. gpus == 0 means the job runs on CPU."""

    gpus: int = 0
    cpus: int = 1
    mem: str | None = None  # SLURM syntax: 64G, 500M
    time: str | None = None  # SLURM syntax: HH:MM:SS or D-HH:MM:SS

    def gpu_hours(self) -> float:
        return self.gpus * time_to_hours(self.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_to_hours(time: str | None) -> float:
    """Hours in a SLURM time string ('D-HH:MM:SS', 'HH:MM:SS', 'MM:SS', 'MM'); 0 when unset."""
    if not time:
        return 0.0
    days = 0
    if "-" in time:
        d, time = time.split("-", 1)
        days = int(d)
    parts = [int(p) for p in time.split(":")]
    if len(parts) == 1:
        h, m, s = 0, parts[0], 0
    elif len(parts) == 2:
        h, m, s = 0, parts[0], parts[1]
    else:
        h, m, s = parts[0], parts[1], parts[2]
    return days * 24 + h + m / 60 + s / 3600


@dataclass(frozen=True)
class Node:
    """One job in the graph.

    attrs holds what selectors, status and report group by: run, model, dataset, epoch, task,
    hyperparameters. inputs fingerprints what the job reads beyond its own files (task file,
    dataset, recipe, the cruijff code it runs; see cruijff.inputs). hash covers everything that
    makes the job what it is (its rendered files, resources, inputs and its parents' hashes), so a
    changed hash means the job must run again.
    """

    id: str
    kind: str
    parents: tuple[str, ...]
    resources: Resources
    hash: str
    attrs: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def dir(self) -> str:
        """The node's directory, relative to the plan's output_dir."""
        return self.id

    @property
    def script(self) -> str:
        """The job script, relative to the plan's output_dir."""
        return f"{self.id}/job.sbatch"

    @property
    def record(self) -> str:
        """Append-only JSON lines the job script writes at start and end (status without sacct)."""
        return f"{self.id}/record.jsonl"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "hash": self.hash,
            "parents": list(self.parents),
            "script": self.script,
            "resources": self.resources.as_dict(),
            "attrs": self.attrs,
            "inputs": self.inputs,
        }


@dataclass(frozen=True)
class Plan:
    """The compiled experiment; nodes are in topological order (parents before children)."""

    experiment: str
    output_dir: str  # absolute
    manifest: str  # absolute path of the manifest it came from
    executor: str  # auto | slurm | local
    max_parallel: int  # local executor's parallelism
    cluster: dict[str, Any]
    nodes: tuple[Node, ...]

    def node(self, node_id: str) -> Node:
        return self.by_id()[node_id]

    def by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for p in n.parents:
                out[p].append(n.id)
        return out
