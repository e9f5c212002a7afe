"""Store keys: what decides a node's result, and nothing that only says where or under which name.

Pure (no file system): the compiler hands each node's settings in as data — the configs it renders,
before they become text — with the paths it knows replaced by what they stand for (the node's own
folder by `<node>`, a parent's by `<parent:i>`, the plan directory by `<plan>`, a model folder by
`<model>` with the folder's content fingerprint under `model`, a dataset by `<dataset>` with its
fingerprint from the node's inputs, ...). So two experiments that train the same model on the same
bytes with the same settings and code get the same key, whatever their plan directories, experiment
names, run names or dataset and model names; a node whose model or data cannot be fingerprinted
gets no key (it is never stored nor reused).

A node's settings are also what `plan` compares with a near stored entry (same kind, model and
dataset: `near_keys`) to say why it was not reused (`explain`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

KEY_VERSION = 1
KEYS_FILE = "store-keys.json"  # in the plan directory, written by `plan` beside plan.json
SETTINGS_FILE = "store-settings.json"  # beside it: each node's settings, read only to explain a miss or publish
UNKNOWN = ("missing",)  # fingerprints that say nothing about the content (cruijff.compiler.inputs.MISSING)
# Settings that name where a job writes its logs, not what it computes.
NAMING_ONLY = ("metric_logger",)


def normalise(value: Any, places: list[tuple[str, str]]) -> Any:
    """value with every string that starts with one of the paths replaced by its placeholder
    (places: (path, placeholder), longest path first, so a folder inside another is replaced whole)."""
    firsts = frozenset(path[:1] for path, _ in places)  # most strings start with none of them
    return _normalise(value, places, firsts)


def _normalise(value: Any, places: list[tuple[str, str]], firsts: frozenset[str]) -> Any:
    kind = type(value)  # exact types first: 5,000 nodes' settings are some 200,000 values
    if kind is str or isinstance(value, str):
        if value[:1] in firsts:
            for path, placeholder in places:
                if value == path or value.startswith(path + "/"):
                    return placeholder + value[len(path):]
        return value
    if kind is dict or isinstance(value, dict):
        return {k: (v if type(v) in _PLAIN else _normalise(v, places, firsts))
                for k, v in value.items() if k not in NAMING_ONLY}
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        return [v if type(v) in _PLAIN else _normalise(v, places, firsts) for v in value]
    return value


_PLAIN = frozenset({int, float, bool, type(None)})  # values no path can be in


def places(pairs: Iterable[tuple[str | None, str]]) -> list[tuple[str, str]]:
    """(path, placeholder) pairs without empty paths, longest path first."""
    seen = {p.rstrip("/"): h for p, h in pairs if p}
    return sorted(seen.items(), key=lambda kv: -len(kv[0]))


def settings_text(settings: dict[str, Any]) -> str:
    """A node's settings as JSON, as its key and store-settings.json hold them (so a worker process
    that rendered the node can write it, and a re-plan can keep it)."""
    return json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)


def node_key(kind: str, settings: dict[str, Any], parent_keys: list[str | None], text: str | None = None) -> str | None:
    """The key, or None when a parent has none or a fingerprint is unknown (nothing to trust).

    text: settings_text(settings), when the caller has it. The body is the JSON of {"v", "kind",
    "settings", "parents"} with sorted keys, put together from its parts."""
    if any(k is None for k in parent_keys) or any(v in UNKNOWN for v in _fingerprints(settings)):
        return None
    body = (f'{{"kind":{json.dumps(kind)},"parents":{json.dumps(parent_keys, separators=(",", ":"))},'
            f'"settings":{settings_text(settings) if text is None else text},"v":{json.dumps(KEY_VERSION)}}}')
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _fingerprints(settings: dict[str, Any]) -> list[Any]:
    return [settings.get("model"), *(settings.get("inputs") or {}).values()]


def near_keys(kind: str, settings: dict[str, Any]) -> list[str]:
    """Where to look for entries to explain a miss with: the same kind of job on the same model and
    dataset (and task), then on the same model with any dataset (a dataset whose bytes changed)."""
    inputs = settings.get("inputs") or {}
    out = []
    for dataset in (inputs.get("dataset"), "*"):
        body = json.dumps([kind, settings.get("model"), dataset, settings.get("task")], default=str)
        out.append(hashlib.sha256(body.encode()).hexdigest()[:24])
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted keys → leaf values; a list (or an empty mapping) becomes its JSON
    text, so every value is hashable and a node is compared with a stored entry by set operations."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if not isinstance(value, (str, int, float, bool, type(None))):
        value = json.dumps(value, sort_keys=True, default=str)
    return {prefix: value}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(setting, value here, value in the stored entry) for each setting that differs (both flat:
    store-keys.json and meta.json hold settings flattened)."""
    missing = object()
    keys = list(a) + [k for k in b if k not in a]
    return [(k, a.get(k), b.get(k)) for k in keys if a.get(k, missing) != b.get(k, missing)]


_INPUT_NAMES = {"inputs.dataset": "the dataset's bytes", "inputs.task file": "the task file",
                "inputs.recipe": "the recipe", "inputs.cruijff code": "cruijff's code", "model": "the model's files"}


def describe(setting: str, here: Any, stored: Any) -> str:
    """One difference in words: `optimizer.lr 0.0001 here, 0.0003 in the stored run`."""
    if setting in _INPUT_NAMES:
        return f"{_INPUT_NAMES[setting]} changed since the stored run"
    name = setting.removeprefix("config.").removeprefix("eval.")
    return f"{name} {_text(here)} here, {_text(stored)} in the stored run"


def _text(value: Any) -> str:
    text = "unset" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def explain(node_id: str, settings: dict[str, Any], parents_here: list[str | None],
            candidates: list[dict[str, Any]], limit: int = 3) -> dict[str, Any] | None:
    """Why a node was not reused, from the nearest of the stored entries (each an entry's meta:
    flat settings, parents, experiment); None when there is none to compare with."""
    best = None
    here = settings
    mine = frozenset(here.items())
    for meta in candidates:
        theirs = meta.get("\0items")
        if theirs is None:  # once per entry, kept on the (cached) meta
            theirs = meta["\0items"] = frozenset((meta.get("settings") or {}).items())
        count = len(mine ^ theirs)  # set operations in C (8 candidates × 5,000 nodes); a changed value counts 2
        parents_differ = list(meta.get("parents") or []) != list(parents_here)
        score = (count + (2 if parents_differ else 0), -float(meta.get("created") or 0))
        if best is None or score < best[0]:
            best = (score, meta, parents_differ)
    if best is None:
        return None
    _, meta, parents_differ = best
    theirs = meta.get("settings") or {}
    differ = {k for k, _ in mine ^ meta["\0items"]}
    diffs = [(k, here.get(k), theirs.get(k)) for k in [*here, *(k for k in theirs if k not in here)] if k in differ]
    words = [describe(*d) for d in diffs[:limit]]
    if len(diffs) > limit:
        words.append(f"{len(diffs) - limit} more setting(s)")
    if parents_differ:
        words.append("what it evaluates (its fine-tune) is not the stored run's" if not diffs or words
                     else "its inputs from earlier jobs differ")
    where = f"the stored run from experiment {meta.get('experiment')}"
    text = f"{node_id}: not reused — " + "; ".join(words)
    text = text.replace("the stored run", where, 1) if "the stored run" in text else f"{text} (nearest: {where})"
    return {"node": node_id, "text": text, "entry": meta.get("key"), "experiment": meta.get("experiment"),
            "plan_dir": meta.get("plan_dir"), "differences": [{"setting": s, "here": h, "stored": t}
                                                               for s, h, t in diffs],
            "parents_differ": parents_differ}
