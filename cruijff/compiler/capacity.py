"""Will the experiment fit the cluster? What `cruijff plan` says before anything is submitted.

Pure: the submission layout comes from the same batching as `apply` (cruijff/compiler/batching.py) over the
rendered job scripts; the limits are read by the SLURM executor at the edge (commands/compile.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cruijff.compiler.batching import header_shape, make_batches
from cruijff.errors import Problem
from cruijff.plan import Node, Plan, Resources, time_to_hours


def submission_layout(plan: Plan, scripts: dict[str, str], max_array_size: int,
                      shapes: dict[str, tuple[str, ...]] | None = None) -> dict[str, Any]:
    """How a first apply submits the whole plan: sbatch calls, job arrays, plain jobs.

    shapes: header shapes known already (node id → header_shape of its job script)."""
    shapes = shapes or {}

    def shape(n: Node) -> tuple[str, ...]:
        return shapes[n.id] if n.id in shapes else header_shape(scripts.get(n.script, ""))

    batches = make_batches(plan, [n.id for n in plan.nodes], {}, shape,
                           max_array_size=max_array_size, max_concurrent=plan.cluster.get("max_concurrent") or {})
    arrays = [b for b in batches if b.is_array]
    return {
        "jobs": len(plan.nodes),
        "submissions": len(batches),
        "arrays": len(arrays),
        "plain_jobs": len(batches) - len(arrays),
        "max_array_size": max_array_size,
    }


def fit_problems(n_jobs: int, limits: dict[str, Any]) -> list[Problem]:
    """Warnings for an experiment that cannot be queued in one go under these limits.

    limits: MaxJobCount (cluster) and submit_limit: (n, where it comes from) for the user.
    """
    problems = []
    submit = limits.get("submit_limit")
    how = ("apply it in parts with `cruijff apply --only ...` (e.g. --only model:NAME), each once the "
           "previous part has finished, or shrink the grid")
    if submit and n_jobs > submit[0]:
        problems.append(Problem(
            f"the experiment has {n_jobs:,} jobs, but SLURM lets you queue at most {submit[0]:,} "
            f"({submit[1]}; every array task counts as one): `cruijff apply` cannot submit it in one go",
            hint=how, severity="warning"))
    max_jobs = limits.get("MaxJobCount")
    if max_jobs and n_jobs > max_jobs:
        problems.append(Problem(
            f"the experiment has {n_jobs:,} jobs, but the cluster holds at most {max_jobs:,} (MaxJobCount): "
            f"`cruijff apply` cannot submit it in one go", hint=how, severity="warning"))
    return problems


# --- Can any node run each job? (plan time; sinfo is read at the edge) -------------------------

SINFO_NODE_FORMAT = "%R|%c|%m|%G|%l|%f"  # partition|cpus|memory (MB)|gres|time limit|features


@dataclass(frozen=True)
class NodeShape:
    """What one node of one partition offers a single job."""

    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    max_hours: float | None  # None: no time limit
    features: frozenset[str]


def parse_sinfo_nodes(text: str) -> list[NodeShape]:
    """`sinfo -h -N -o SINFO_NODE_FORMAT` lines as node shapes (one line per node and partition)."""
    shapes = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 6:
            continue
        partition, cpus, mem, gres, limit, features = parts
        try:
            shapes.append(NodeShape(partition, int(cpus.rstrip("+")), int(mem.rstrip("+")), _gres_gpus(gres),
                                    None if limit in ("infinite", "UNLIMITED", "n/a") else time_to_hours(limit),
                                    frozenset(f for f in features.split(",") if f and f != "(null)")))
        except ValueError:
            continue  # a line sinfo wrote for something else (a down node without numbers)
    return shapes


def _gres_gpus(gres: str) -> int:
    """GPUs in a gres string: gpu:4, gpu:a100:4(S:0-1), gpu:a100:2,gpu:v100:2 (summed), (null)."""
    total = 0
    for item in re.split(r",(?![^()]*\))", gres):
        fields = re.sub(r"\(.*\)", "", item).split(":")
        if fields[0] == "gpu" and len(fields) >= 2 and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def mem_to_mb(mem: str | None) -> int:
    """SLURM memory syntax (64G, 500M, 1T, plain number = MB) in MB; 0 when unset."""
    if not mem:
        return 0
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
    if mem[-1].upper() in units:
        return int(float(mem[:-1]) * units[mem[-1].upper()])
    return int(mem)


def _fits(r: Resources, node: NodeShape) -> bool:
    hours = time_to_hours(r.time)
    return (r.gpus <= node.gpus and r.cpus <= node.cpus and mem_to_mb(r.mem) <= node.mem_mb
            and (node.max_hours is None or hours <= node.max_hours))


def _eligible(nodes: list[NodeShape], cluster: dict[str, Any]) -> tuple[list[NodeShape], str]:
    """The nodes a job may land on under cluster.partition and a simple cluster.constraint."""
    where = "the cluster"
    if cluster.get("partition"):
        wanted = set(cluster["partition"].split(","))
        nodes = [n for n in nodes if n.partition in wanted]
        where = f"partition {cluster['partition']}"
    constraint = cluster.get("constraint")
    if constraint and re.fullmatch(r"[A-Za-z0-9_.-]+(\|[A-Za-z0-9_.-]+)*", constraint):
        anyof = set(constraint.split("|"))
        nodes = [n for n in nodes if n.features & anyof]
        where += f" with constraint {constraint}"
    return nodes, where


def _ask(r: Resources) -> str:
    parts = [f"{r.gpus} GPU{'s' if r.gpus != 1 else ''}", f"{r.cpus} CPU{'s' if r.cpus != 1 else ''}"]
    if r.mem:
        parts.append(f"{r.mem} memory")
    if r.time:
        parts.append(f"{r.time} time")
    return ", ".join(parts)


def resource_groups(plan: Plan) -> dict[tuple[str, str, Resources], int]:
    """How many jobs of each (kind, model, resources): all resource_problems needs of the nodes."""
    seen: dict[tuple[str, str, Resources], int] = {}
    for node in plan.nodes:
        key = (node.kind, str(node.attrs.get("model", "")), node.resources)
        seen[key] = seen.get(key, 0) + 1
    return seen


def resource_problems(plan: Plan | None, nodes: list[NodeShape], *, cluster: dict[str, Any] | None = None,
                      groups: dict[tuple[str, str, Resources], int] | None = None) -> list[Problem]:
    """A warning for each kind of job that no node can ever run (sbatch would refuse it, or it
    would pend forever): the request, and the largest node there is.

    groups and cluster: resource_groups(plan) and plan.cluster, kept from an earlier plan."""
    if not nodes:
        return []
    cluster = plan.cluster if cluster is None else cluster
    eligible, where = _eligible(nodes, cluster)
    if not eligible:  # one cause for every job: say it once
        return [_no_node_problem(nodes, cluster, where)]
    seen = resource_groups(plan) if groups is None else groups
    problems = []
    for (kind, model, r), count in seen.items():
        if any(_fits(r, n) for n in eligible):
            continue
        if eligible:
            big = max(eligible, key=lambda n: (n.gpus, n.mem_mb, n.cpus))
            largest = (f"the largest node there has {big.gpus} GPUs, {big.cpus} CPUs, {big.mem_mb // 1024}G memory"
                       + (f" and a {big.max_hours:g} h time limit" if big.max_hours is not None else ""))
        else:
            largest = "no node matches it"
        what = f"{count} {kind} job{'s' if count != 1 else ''}" + (f" of model {model}" if model else "")
        problems.append(Problem(
            f"{what} {'asks' if count == 1 else 'ask'} for {_ask(r)}, but no node in {where} can run such a job ({largest})",
            hint="lower the request (models.<name>.resources, finetune.resources or eval.resources) or "
                 "choose a partition whose nodes are big enough (cluster.partition, cluster.constraint)",
            severity="warning"))
    return problems


def _no_node_problem(nodes: list[NodeShape], cluster: dict[str, Any], where: str) -> Problem:
    """Why no node at all is eligible: a partition the cluster lacks, or a constraint no node meets."""
    partitions = sorted({n.partition for n in nodes})
    missing = [p for p in str(cluster.get("partition") or "").split(",") if p and p not in partitions]
    if missing:
        return Problem(f"partition {', '.join(missing)} does not exist on this cluster "
                       f"(it has: {', '.join(partitions)}), so no job of this plan can run",
                       hint="set cluster.partition to one of them (`sinfo -s` lists them)", severity="warning")
    features = sorted({f for n in nodes for f in n.features})
    return Problem(f"no node in {where} exists (node features there: {', '.join(features) or 'none'}), "
                   "so no job of this plan can run",
                   hint="change cluster.constraint (or cluster.partition)", severity="warning")
