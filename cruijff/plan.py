"""The plan: plain frozen data that every stage after expansion hands to the next, and plan.json.

A Plan is what `plan.json` holds: the versioned hand-off between `plan` and `apply`/`status`
(dbt's manifest.json); executors, state and status read only this.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

from cruijff import __version__
from cruijff.errors import StateError

# Node kinds. Ids are also the node's directory relative to the plan's output_dir.
FINETUNE = "finetune"  # finetune/<run>
EVAL = "eval"  # eval/<run>/epoch_<n>/<task>
BASE_EVAL = "base_eval"  # base_eval/<model>/<task>
CHECKPOINT_EVAL = "checkpoint_eval"  # checkpoint_eval/<model>/<dataset>/<task>: a model trained elsewhere
PREPARE = "prepare"  # prepare/<dataset>  (data preparation before training)
NODE_KINDS = (PREPARE, FINETUNE, EVAL, BASE_EVAL, CHECKPOINT_EVAL)
EVAL_KINDS = (EVAL, BASE_EVAL, CHECKPOINT_EVAL)  # the kinds that run inspect eval


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
        # asdict() without its recursive deep copy: the fields are plain values (a plan has thousands)
        return {"gpus": self.gpus, "cpus": self.cpus, "mem": self.mem, "time": self.time}


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
    dataset, recipe, the cruijff code it runs; see cruijff.compiler.inputs). hash covers everything that
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

    def hashes(self) -> dict[str, str]:
        """Node id → hash, in plan order (what a diff compares)."""
        return {n.id: n.hash for n in self.nodes}

    def by_id(self) -> dict[str, Node]:
        return {n.id: n for n in self.nodes}

    def children(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for p in n.parents:
                out[p].append(n.id)
        return out


# plan.json

PLAN_FILE = "plan.json"
SCHEMA_VERSION = 1


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {**_head(plan), "nodes": [n.as_dict() for n in plan.nodes]}


def _head(plan: Plan) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "cruijff_version": __version__,
        "experiment": plan.experiment,
        "output_dir": plan.output_dir,
        "manifest": plan.manifest,
        "executor": {"kind": plan.executor, "max_parallel": plan.max_parallel},
        "cluster": plan.cluster,
    }


def _node(n: dict[str, Any]) -> Node:
    return Node(id=n["id"], kind=n["kind"], parents=tuple(n["parents"]), resources=Resources(**n["resources"]),
                hash=n["hash"], attrs=n.get("attrs", {}), inputs=n.get("inputs", {}))


def plan_from_dict(data: dict[str, Any], *, source: str = PLAN_FILE) -> Plan:
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StateError(
            f"{source}: plan schema version {version!r} is not supported (this cruijff reads {SCHEMA_VERSION})",
            hint="re-run `cruijff plan` with this version of cruijff",
        )
    nodes = tuple(_node(n) for n in data["nodes"])
    return Plan(
        experiment=data["experiment"],
        output_dir=data["output_dir"],
        manifest=data["manifest"],
        executor=data["executor"]["kind"],
        max_parallel=data["executor"]["max_parallel"],
        cluster=data.get("cluster", {}),
        nodes=nodes,
    )


_encode = json.JSONEncoder().encode  # ensure_ascii: plan.json is ASCII, its bytes are its characters
# plan.json's layout (encode writes it, PlanText reads it): its head, then one node per line
_NODES_OPEN = b',\n  "nodes": [\n'
_INDENT = "    "
_LINE_END = b",\n"  # a line never holds a newline of its own: JSON writes one in a string as \n
_NODES_CLOSE = b"\n  ]\n}\n"
_ID = b'    {"id": "'
_HASH = b'"hash": "'


def node_line(node: Node) -> str:
    """The node's line in plan.json (without its indent)."""
    return _encode(node.as_dict())


def encode(plan: Plan, previous: PlanText | None = None, kept: Collection[str] = ()) -> bytes:
    """plan.json's bytes: indented JSON with one node per line, readable, diffable, and written by
    json's C encoder (indent=2 throughout would use the pure-Python one: half a second for 5,000
    nodes).

    kept: nodes whose lines in `previous` (the plan.json this plan replaces) are theirs in this
    one: a re-plan's untouched nodes, copied from there a stretch of consecutive lines at a time
    (5,000 nodes' 5 MB are copied once, into the result)."""
    head = json.dumps(_head(plan), indent=2).encode()
    if not plan.nodes:
        return head[:-2] + b',\n  "nodes": []\n}\n'
    spans = previous.spans if previous is not None and kept else {}
    old = memoryview(previous.data) if spans else None
    pieces: list[bytes | memoryview] = [head[:-2], _NODES_OPEN]
    start = end = -1  # the stretch of `previous` being copied
    for i, node in enumerate(plan.nodes):
        span = spans.get(node.id) if node.id in kept else None
        if span is not None and span[1] == end + len(_LINE_END):  # the next line there too
            end = span[2]
            continue
        if end >= 0:
            pieces.append(old[start:end])
            end = -1
        if i:
            pieces.append(_LINE_END)
        if span is not None:
            start, end = span[1], span[2]
        else:
            pieces.append((_INDENT + node_line(node)).encode())
    if end >= 0:
        pieces.append(old[start:end])
    pieces.append(_NODES_CLOSE)
    return b"".join(pieces)


def dumps(plan: Plan) -> str:
    """plan.json's text (`encode`)."""
    return encode(plan).decode("ascii")


def load_plan(plan_dir: str | Path) -> Plan:
    """Read plan.json from a plan directory, with a readable error when it is not one."""
    path = Path(plan_dir) / PLAN_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise StateError(
            f"{plan_dir}: no {PLAN_FILE} here",
            hint="run `cruijff plan MANIFEST` first, or pass the plan directory it printed",
        ) from None
    except json.JSONDecodeError as e:
        raise StateError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})",
                         hint="re-run `cruijff plan` to write it again") from None
    return plan_from_dict(data, source=str(path))


@dataclass(frozen=True)
class PlanText:
    """The plan.json a new plan replaces, indexed without parsing its nodes: `encode` writes one
    node per line, so each node's id, hash and line are found by searching its bytes, and only the
    few nodes an edit changed are parsed (5,000 nodes: a few ms instead of 0.1 s)."""

    data: bytes  # plan.json as `encode` lays it out (the file's bytes, or the file re-encoded)
    spans: dict[str, tuple[str, int, int]]  # node id → (hash, start, end of its line in data), in plan order
    digest: str  # sha256 of the file's bytes (plan_digest)

    def hashes(self) -> dict[str, str]:
        return {node_id: h for node_id, (h, _, _) in self.spans.items()}

    def node(self, node_id: str) -> Node | None:
        """The node parsed from its line; None when the line was edited into something else."""
        try:
            _, start, end = self.spans[node_id]
            return _node(json.loads(self.data[start:end]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def read_plan_text(plan_dir: str | Path) -> PlanText | None:
    """plan.json in plan_dir; None when there is none, or it is unreadable or of another version
    (then every node of a new plan counts as added)."""
    try:
        data = (Path(plan_dir) / PLAN_FILE).read_bytes()
    except OSError:
        return None
    digest = plan_digest(data)
    try:
        spans = _index(data)
    except UnicodeDecodeError:
        spans = None
    if spans is None:  # not as `encode` lays it out (edited by hand, or empty): parsed whole, laid out again
        try:
            data = encode(plan_from_dict(json.loads(data)))
        except (ValueError, KeyError, TypeError, AttributeError, StateError):
            return None
        spans = _index(data) or {}  # (a plan of no nodes)
    return PlanText(data, spans, digest)


def plan_digest(data: bytes) -> str:
    """Which plan.json this is (the render cache's entries belong to one)."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _index(data: bytes) -> dict[str, tuple[str, int, int]] | None:
    """Each node's (hash, start, end) in plan.json's bytes as `encode` lays them out, else None."""
    start = data.find(_NODES_OPEN)
    if start < 0 or not data.endswith(_NODES_CLOSE):
        return None
    try:
        if json.loads(data[:start] + b"}").get("schema_version") != SCHEMA_VERSION:
            return None
    except ValueError:
        return None
    spans: dict[str, tuple[str, int, int]] = {}
    last = len(data) - len(_NODES_CLOSE)
    at = start + len(_NODES_OPEN)
    while True:
        end = data.find(_LINE_END, at, last)
        end = last if end < 0 else end
        if not data.startswith(_ID, at, end):
            return None
        node_id = _id_at(data, at + len(_ID), end)
        h = data.find(_HASH, at, end) + len(_HASH)
        close = data.find(b'"', h, end)
        if node_id is None or h < len(_HASH) or close < 0:
            return None
        spans[node_id] = (data[h:close].decode(), at, end)
        if end == last:
            return spans
        at = end + len(_LINE_END)


def _id_at(data: bytes, at: int, end: int) -> str | None:
    """The JSON string that starts at `at` (after its opening quote), or None when it does not end
    before `end`."""
    close = data.find(b'"', at, end)
    if close < 0:
        return None
    if data.find(b"\\", at, close) < 0:  # nothing escaped: the bytes are the id
        return data[at:close].decode()
    from json.decoder import scanstring

    try:
        return scanstring(data[at - 1:end].decode(), 1)[0]
    except ValueError:
        return None


@dataclass(frozen=True)
class PlanDiff:
    """What changed between two plans, by node id and hash (terraform plan's summary)."""

    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(getattr(self, k)) for k in ("added", "changed", "removed", "unchanged")}


def diff_plans(old: Plan | PlanText | None, new: Plan) -> PlanDiff:
    old_hashes = old.hashes() if old else {}
    new_hashes = new.hashes()
    return PlanDiff(
        added=tuple(i for i in new_hashes if i not in old_hashes),
        changed=tuple(i for i in new_hashes if i in old_hashes and old_hashes[i] != new_hashes[i]),
        removed=tuple(i for i in old_hashes if i not in new_hashes),
        unchanged=tuple(i for i in new_hashes if old_hashes.get(i) == new_hashes[i]),
    )
