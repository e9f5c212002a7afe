"""Keep the nodes an edit did not touch as the plan on disk has them (issue 27.3: a re-plan after
one edit of a 5,000-job grid reads and writes only what changed).

Rendering a node (its configs, job script, hash and store key) is most of a compile. A node's
rendering is decided by the manifest apart from its grid (each node's grid point is in its spec),
the node's spec, its parents' hashes and store keys, the fingerprints of what it reads, the model
folders' fingerprints and reachability, the recipes folder and cruijff's own code. `context`
digests the part shared by all nodes and `node_key` the rest. After a plan is written, its entries
are saved with the digest of its plan.json: while that plan.json is the one on disk, a node whose
key equals its entry's is that plan's node, and while its files are there at their sizes
(`missing`), nothing of it is rendered, read or written again: its hash, store key, near keys,
settings text and header shape come from the entry, its line from plan.json. Anything
unreadable, from another context, beside another plan.json or from another cruijff is simply a
miss: every node is rendered.

The cache lives in cruijff's cache folder (one file per plan directory, written after the plan
is; the KEEP most recent are kept), pickled: 5,000 nodes' entries load in about 10 ms.

Checking the kept nodes' files is one stat per file (14,000 for 5,000 jobs: 45 ms here, more on a
network file system). `check_ahead` starts it in a child (cruijff.cores.ahead) while the
compile builds the graph; its answer counts only for the very cache file `load` read, else the
files are checked here.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cruijff.cores import Ahead

VERSION = 4  # 3: files' sizes instead of their text, near keys instead of the settings, header shapes;
# 4: each distinct header shape one object (5,000 nodes have a few: loaded in 5 ms instead of 12)
# node id → (node key, its files' sizes, hash, near keys, store key, store-key settings as JSON, header shape)
Entries = dict[str, tuple[str, dict[str, int], str, list[str], "str | None", str, tuple[str, ...]]]


def _path(output_dir: str) -> Path:
    from cruijff.paths import cache_dir

    return cache_dir() / "plans" / f"{hashlib.sha256(os.path.abspath(output_dir).encode()).hexdigest()[:24]}.nodes"


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def context(m: dict[str, Any], recipes: str, check_paths: bool, models: dict[str, Any]) -> str:
    """What every node's rendering depends on: the manifest less its grid, the recipes, the model
    folders (models: name → fingerprint and reachability), the working folder and cruijff's code."""
    from cruijff.compiler.replan import code_signature

    return _digest({"v": VERSION, "manifest": {k: v for k, v in m.items() if k != "grid"}, "recipes": recipes,
                    "check_paths": check_paths, "models": models, "cwd": os.getcwd(), "code": code_signature()})


def node_key(spec: Any, parents: tuple[str, ...], parent_hashes: list[str], parent_keys: list[Any],
             inputs: dict[str, str]) -> str:
    """Pickled, not JSON (5,000 nodes: 0.1 s less): equal bytes are equal values, and values that
    differ only in key order or sharing merely miss."""
    body = pickle.dumps((spec.id, spec.kind, vars(spec.resources), spec.attrs, parents, parent_hashes, parent_keys,
                         inputs), protocol=pickle.HIGHEST_PROTOCOL)
    return hashlib.sha256(body).hexdigest()


Identity = tuple[int, int, int, int]  # a cache file's device, inode, size and mtime: which file was read


def _identity(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns  # save replaces the file: a new inode


def load(output_dir: str, ctx: str, on_disk: str) -> tuple[Entries, Identity | None]:
    """The last plan's entries, when they were rendered in this context and that plan is the
    plan.json on disk (on_disk: its plan_digest), else none; and the identity of the file read."""
    try:
        identity, doc = _read(output_dir)
    except Exception:  # missing, truncated, or written by another cruijff: a miss, never an error
        return {}, None
    if not isinstance(doc, dict) or doc.get("context") != ctx or doc.get("plan") != on_disk:
        return {}, None
    return doc["nodes"], identity


def check_ahead(output_dir: str) -> Ahead | None:
    """`missing` for the cache of output_dir, started in a child (cruijff.cores.ahead); None
    where there is no plan or no cache of it, or no child."""
    from cruijff.cores import ahead
    from cruijff.plan import PLAN_FILE

    if not (os.path.isfile(os.path.join(output_dir, PLAN_FILE)) and _path(output_dir).is_file()):
        return None
    return ahead(lambda: _check(output_dir))


def _read(output_dir: str) -> tuple[Identity, Any]:
    """The identity of output_dir's cache file and what it holds."""
    with open(_path(output_dir), "rb") as f:
        return _identity(os.fstat(f.fileno())), pickle.load(f)


def _check(output_dir: str) -> tuple[Identity, set[str]]:
    """The identity of the cache file read, and the nodes of its entries with a file missing."""
    identity, doc = _read(output_dir)
    return identity, missing(output_dir, doc["nodes"])


def missing(output_dir: str, entries: Entries, identity: Identity | None = None,
            ahead: Ahead | None = None) -> set[str]:
    """The nodes whose files are not all in their folder at the sizes the last plan wrote (a file
    deleted or edited since is written again): the child's answer when it checked the same cache
    file (identity: of the file the entries came from), else checked here."""
    answer = ahead.result() if ahead is not None else None
    if answer is not None and identity is not None and answer[0] == identity:
        return answer[1]
    out = set()
    for node_id, entry in entries.items():
        for rel, size in entry[1].items():
            try:
                if os.stat(f"{output_dir}/{node_id}/{rel}").st_size != size:
                    out.add(node_id)
                    break
            except OSError:
                out.add(node_id)
                break
    return out


def save(output_dir: str, ctx: str, entries: Entries, written: str) -> None:
    """Best effort, after the plan is written: without it the next plan renders every node.

    written: the plan_digest of the plan.json this plan wrote (not of the one on disk now: another
    plan may have written there since)."""
    path = _path(output_dir)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump({"context": ctx, "nodes": entries, "plan": written}, f,
                        protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        _prune(path.parent)
    except (OSError, pickle.PicklingError):
        for stale in (tmp, path):
            try:
                if stale:
                    os.unlink(stale)
            except OSError:
                pass


KEEP = 16  # plan directories whose entries are kept (5,000 nodes: 6.4 MB each), the most recent


def _prune(folder: Path) -> None:
    """Home folders on clusters are small: only the KEEP most recently planned directories' caches stay."""
    caches = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".nodes"):
            try:
                caches.append((entry.stat().st_mtime_ns, entry.path))
            except OSError:
                pass
    for _, stale in sorted(caches, reverse=True)[KEEP:]:
        try:
            os.unlink(stale)
        except OSError:
            pass
