"""Which nodes share one sbatch call: job arrays for stages of uniform shape (pure).

A stage's nodes become one job array when they ask for the same resources (their job scripts'
#SBATCH lines, less the per-node name, log and directory) and wait for the same jobs. A node
whose one varying parent is task t of an array gets task id t in its own array, which waits
with `aftercorr`: evaluation t starts when fine-tune t succeeds, not when all of them have.
Several such children of one parent task (epochs × tasks) fill several arrays, one per rank.
Arrays are split to keep task ids below the cluster's MaxArraySize; a group of one is a plain
job, as is every node when the executor has no arrays (max_array_size 0).

Dependencies on jobs of this same apply are `Ref`s to earlier batches, resolved to job ids as
the batches are submitted in order (apply.py); jobs from earlier applies are plain job ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace

from cruijff.plan import Node, Plan

# Per-node #SBATCH options: everything else in the header must match for nodes to share an array.
PER_NODE_OPTIONS = frozenset({"--job-name", "-J", "--output", "-o", "--error", "-e", "--chdir", "-D",
                              "--comment", "--array", "-a", "--dependency", "-d"})


@dataclass(frozen=True)
class Ref:
    """A job of this apply: batch `batch`, or its array task `task`."""

    batch: int
    task: int | None = None


Dep = str | Ref  # a job id from an earlier apply (`123` or `123_4`), or a batch of this one


@dataclass(frozen=True)
class Batch:
    index: int
    kind: str
    nodes: tuple[Node, ...]
    tasks: tuple[int, ...] | None  # array task ids, one per node; None: one plain job
    after_ok: tuple[Dep, ...] = ()  # every one of these must succeed first
    after_corr: Dep | None = None  # the array whose task t each task t waits for
    throttle: int | None = None  # %N: at most N tasks of this array run at once

    @property
    def is_array(self) -> bool:
        return self.tasks is not None

    @property
    def digest(self) -> str:
        """Names the array: the same members give the same name (adoption after a crash)."""
        members = [[t, n.id, n.hash] for t, n in zip(self.tasks or (), self.nodes)]
        return hashlib.sha256(json.dumps([self.kind, members]).encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        """The job name's node part: a node id for a plain job, `array/<kind>/<digest>` for an array."""
        return f"array/{self.kind}/{self.digest}" if self.is_array else self.nodes[0].id


def header_shape(script_text: str) -> tuple[str, ...]:
    """The #SBATCH lines sbatch reads (those before the first command), less per-node ones."""
    head = script_text[:HEAD_CHARS]  # the header is at the top: only the rest of a long one is split
    shape, complete = _header_shape(head.splitlines()[1:])
    return shape if complete or len(head) == len(script_text) else _header_shape(script_text.splitlines()[1:])[0]


HEAD_CHARS = 4096


def _header_shape(lines: list[str]) -> tuple[tuple[str, ...], bool]:
    """(the shape, whether a command ended the header within these lines)."""
    shape = []
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return tuple(shape), True  # a command (even cut short, it is one): the header is whole
        if stripped.startswith("#SBATCH"):
            option = stripped[len("#SBATCH"):].strip().split("=", 1)[0].split(" ", 1)[0]
            if option not in PER_NODE_OPTIONS:
                shape.append(stripped)
    return tuple(shape), False


def _levels(plan: Plan, ids: list[str]) -> dict[str, int]:
    """Longest path from a root within `ids`: a node's parents are always at lower levels."""
    by_id = plan.by_id()
    level: dict[str, int] = {}
    for node_id in ids:  # topological order
        level[node_id] = 1 + max((level[p] for p in by_id[node_id].parents if p in level), default=-1)
    return level


def _split_task(job_id: str) -> tuple[str, int] | None:
    array_id, sep, task = job_id.partition("_")
    return (array_id, int(task)) if sep and task.isdigit() else None


def make_batches(
    plan: Plan,
    to_submit: list[str],
    live: dict[str, str],
    shape: Callable[[Node], Hashable],
    *,
    max_array_size: int,
    max_concurrent: dict[str, int] | None = None,
) -> list[Batch]:
    """The submissions for `to_submit` (topological order), parents' batches first.

    live: job ids of parents that are queued or running from earlier applies (done parents
    are not waited for: SLURM drops a dependency on a job it has forgotten).
    """
    by_id = plan.by_id()
    if max_array_size <= 1:  # one plain job per node, in the plan's order
        position = {node_id: i for i, node_id in enumerate(to_submit)}
        return [Batch(i, by_id[node_id].kind, (by_id[node_id],), None,
                      tuple(Ref(position[p]) if p in position else live[p]
                            for p in by_id[node_id].parents if p in position or p in live))
                for i, node_id in enumerate(to_submit)]
    level = _levels(plan, to_submit)
    placed: dict[str, tuple[int, int | None]] = {}  # node id -> (batch index, task id or None)
    batches: list[Batch] = []
    for lvl in sorted(set(level.values())):
        groups: dict[tuple, list[tuple[Node, int | None, Dep | None]]] = {}
        for node_id in (i for i in to_submit if level[i] == lvl):
            node = by_id[node_id]
            whole: list[Dep] = []
            tasks: list[tuple[Dep, int, Dep]] = []  # (array, task id, that one task)
            for p in node.parents:
                if p in placed:
                    b, t = placed[p]
                    if t is None:
                        whole.append(Ref(b))
                    else:
                        tasks.append((Ref(b), t, Ref(b, t)))
                elif p in live:
                    split = _split_task(live[p])
                    if split:
                        tasks.append((split[0], split[1], live[p]))
                    else:
                        whole.append(live[p])
            if len(tasks) == 1:
                corr, task, one = tasks[0]
            else:
                corr, task, one = None, None, None
                whole += [t[2] for t in tasks]
            key = (node.kind, shape(node), tuple(sorted(whole, key=str)), corr)
            groups.setdefault(key, []).append((node, task, one))
        for (kind, _, whole, corr), members in groups.items():
            for nodes, tasks in _arrays(members, corr, max_array_size):
                index = len(batches)
                if tasks is None:
                    node, _, one = nodes[0]
                    after = whole + ((one,) if one is not None else ())
                    batches.append(Batch(index, kind, (node,), None, after))
                    placed[node.id] = (index, None)
                else:
                    batches.append(Batch(index, kind, tuple(n for n, _, _ in nodes), tasks, whole, corr))
                    placed.update({n.id: (index, t) for (n, _, _), t in zip(nodes, tasks)})
    return _throttled(batches, max_concurrent or {})


def _arrays(members, corr, max_array_size):
    """Split one group into arrays (members, task ids) and plain jobs (member, None)."""
    if max_array_size <= 1:
        return [([m], None) for m in members]
    out: list[tuple[list, tuple[int, ...] | None]] = []
    if corr is None:
        for start in range(0, len(members), max_array_size):
            chunk = members[start:start + max_array_size]
            out.append((chunk, tuple(range(len(chunk)))))
    else:
        ranks: list[list] = []  # rank k: the k-th child of each parent task
        seen: dict[int, int] = {}
        singles = []
        for m in members:
            if m[1] >= max_array_size:  # the parent's array predates a lower MaxArraySize
                singles.append(m)
                continue
            k = seen.get(m[1], 0)
            seen[m[1]] = k + 1
            if k == len(ranks):
                ranks.append([])
            ranks[k].append(m)
        out += [(rank, tuple(m[1] for m in rank)) for rank in ranks]
        out += [([m], None) for m in singles]
    return [(nodes, tasks if len(nodes) > 1 else None) for nodes, tasks in out]


def _throttled(batches: list[Batch], max_concurrent: dict[str, int]) -> list[Batch]:
    """Share each stage's max_concurrent among its arrays (%N is per array in SLURM)."""
    arrays_of: dict[str, int] = {}
    for b in batches:
        if b.is_array:
            arrays_of[b.kind] = arrays_of.get(b.kind, 0) + 1
    out = []
    for b in batches:
        limit = max_concurrent.get(b.kind)
        if b.is_array and limit:
            b = replace(b, throttle=max(1, limit // arrays_of[b.kind]))
        out.append(b)
    return out


def task_ranges(tasks: tuple[int, ...] | list[int]) -> str:
    """SLURM's compact task list: (0, 1, 2, 5, 7, 8) -> '0-2,5,7-8'."""
    parts: list[str] = []
    ordered = sorted(set(tasks))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_task_ranges(text: str) -> list[int]:
    """The inverse, tolerating SLURM's throttle suffix and step: '2-5%2' -> [2, 3, 4, 5]."""
    out: list[int] = []
    for part in text.split("%", 1)[0].strip("[]").split(","):
        span, _, step = part.partition(":")
        first, _, last = span.partition("-")
        if not first.strip().isdigit():
            continue
        end = int(last) if last.strip().isdigit() else int(first)
        out.extend(range(int(first), end + 1, int(step) if step.isdigit() and int(step) > 0 else 1))
    return out
