"""`--set KEY.PATH=VALUE`: command-line overrides of a loaded manifest, before schema validation.

Each value is read as YAML (a scalar, or a flow list or mapping: `[4, 8]`, `{gpus: 0}`) and put
into the loaded document as data, never spliced into its text; the schema and every check then see
it as if the manifest had said it. A problem in an overridden value points at its `--set`
argument (`Source.overridden`), not at the manifest's line. A path the schema does not know (or a
named entry, list item or section that is not there) is an error at that argument, with the names
that are allowed. The plan's manifest.yaml lists what was overridden (`provenance`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import StringIO
from typing import Any, Sequence

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from cruijff.errors import Location, ManifestError, Problem

_SEGMENT = re.compile(r"[^.\[\]]+|\[\d+\]")


class _Missing:
    """No value in the manifest: one object, also after pickling (`plan` loads in a child)."""

    def __reduce__(self) -> str:
        return "_MISSING"

    def __repr__(self) -> str:
        return "_MISSING"


_MISSING = _Missing()


@dataclass(frozen=True)
class Override:
    """One `--set`: the argument as given, its key path and its value (YAML, as data)."""

    arg: str
    path: tuple[str | int, ...]
    value: Any
    previous: Any = _MISSING  # the manifest's value before (for provenance); _MISSING: it had none

    @property
    def location(self) -> Location:
        return Location(f"--set {self.arg}")

    @property
    def dotted(self) -> str:
        return dotted(self.path)


def dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path).replace(".[", "[")


def parse(arg: str) -> Override:
    """`a.b[0].c=VALUE` (or `a.b.0.c=VALUE`) → Override; a malformed one is a ManifestError at it."""
    where = Location(f"--set {arg}")
    key, eq, text = arg.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ManifestError([Problem("--set needs KEY=VALUE", where,
                                     "e.g. --set finetune.hyperparameters.epochs=1 --set eval.limit=20")])
    path: list[str | int] = []
    for part in key.split("."):
        pieces = _SEGMENT.findall(part)
        if not part or "".join(pieces) != part:
            raise ManifestError([Problem(f"--set {key!r} is not a key path", where,
                                         "write the keys joined by dots, list items as [0]: eval.tasks[0].max_tokens")])
        for piece in pieces:
            path.append(int(piece[1:-1]) if piece.startswith("[") else (int(piece) if piece.isdigit() else piece))
    yaml = YAML(typ="rt")
    try:
        value = yaml.load(StringIO(text)) if text.strip() else None
    except YAMLError as e:
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        raise ManifestError([Problem(f"the value is not valid YAML: {what}", where,
                                     f"to give it as text, quote it in YAML (and for the shell): "
                                     f"--set '{key}=\"{quoted}\"'")]) from None
    return Override(arg=arg, path=tuple(path), value=value)


def apply(source, args: Sequence[str]) -> list[Override]:
    """Put each `--set` into source.data, in order; every problem at once as a ManifestError."""
    from cruijff.compiler.schema import load_schema

    done: list[Override] = []
    problems: list[Problem] = []
    for arg in args:
        try:
            o = parse(arg)
        except ManifestError as e:
            problems += e.problems
            continue
        problem, previous = _put(source.data, o, load_schema())
        if problem:
            problems.append(problem)
            continue
        o = Override(o.arg, o.path, o.value, previous)
        done = [d for d in done if d.path != o.path]  # the last --set of a key wins
        done.append(o)
    if problems:
        raise ManifestError(problems)
    source.overridden = {o.path: o.location for o in done}
    return done


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _object_branch(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any] | None:
    """The schema of an object at this node (following $ref and oneOf/anyOf), or None."""
    node = _deref(node, root)
    if "properties" in node or "additionalProperties" in node or node.get("type") == "object":
        return node
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        found = _object_branch(branch, root)
        if found is not None:
            return found
    return None


def _items(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any] | None:
    node = _deref(node, root)
    if isinstance(node.get("items"), dict):
        return node["items"]
    for branch in node.get("oneOf", []) + node.get("anyOf", []):
        found = _items(branch, root)
        if found is not None:
            return found
    return None


def _put(data: CommentedMap, o: Override, root: dict[str, Any]) -> tuple[Problem | None, Any]:
    """Set o.value at o.path; (a problem at the --set, None) or (None, the value it replaced)."""
    from cruijff.compiler.validate import did_you_mean

    node: Any = data
    schema: dict[str, Any] | None = root
    for i, part in enumerate(o.path):
        last = i == len(o.path) - 1
        here = dotted(o.path[:i]) or "the manifest"
        if isinstance(node, CommentedSeq):
            if not isinstance(part, int) or not 0 <= part < len(node):
                return Problem(f"{here} has {len(node)} item(s); there is no item {part}", o.location,
                               f"use an index from [0] to [{len(node) - 1}]" if len(node) else "add the list in the manifest"), None
            if last:
                previous = node[part]
                node[part] = o.value
                return None, previous
            schema = _items(schema, root) if schema is not None else None
            node = node[part]
            continue
        if not isinstance(node, CommentedMap):
            return Problem(f"{here} is a value ({_short(node)}), not a section with keys", o.location,
                           f"set {here} itself: --set {here}=..."), None
        obj = _object_branch(schema, root) if schema is not None else None
        props = (obj or {}).get("properties", {})
        extra = (obj or {}).get("additionalProperties", True if obj is None else None)
        if isinstance(part, int) and (str(part) in node or str(part) in props):
            part = str(part)  # a key that is all digits
        if isinstance(part, int):
            return Problem(f"{here} is a mapping, not a list: [{part}] names nothing", o.location,
                           f"keys of {here}: {', '.join(map(str, node)) or 'none yet'}"), None
        if part in node:
            sub = props.get(part) if part in props else (extra if isinstance(extra, dict) else None)
            if last:
                previous = node[part]
                node[part] = o.value
                return None, previous
            node, schema = node[part], sub
            continue
        known = part in props
        free = isinstance(extra, dict) or extra is True
        if not known and not (free and last):
            choices = list(props) or list(map(str, node))
            near = did_you_mean(part, choices)
            what = (f"{here} has no entry {part!r}" if free and not props
                    else f"unknown key {part!r} in {here}")
            listed = ", ".join(choices[:12]) + (" ..." if len(choices) > 12 else "")
            hint = f"{near} ({'entries' if free and not props else 'allowed'}: {listed})" if near else \
                (f"{'entries' if free and not props else 'allowed'}: {listed}" if listed else None)
            return Problem(what, o.location, hint), None
        if last:
            node[part] = o.value
            return None, _MISSING
        node[part] = CommentedMap()
        node, schema = node[part], props[part]
    return None, _MISSING


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def provenance(overrides: Sequence[Override]) -> list[str]:
    """Header lines of the plan's manifest.yaml: what the command line overrode, and what it replaced."""
    if not overrides:
        return []
    from cruijff.compiler.source import to_plain

    lines = ["Overridden on the command line (cruijff plan --set), in this order:"]
    for o in overrides:
        was = "not set" if o.previous is _MISSING else _flow(to_plain(o.previous))
        lines.append(f"  {o.dotted} = {_flow(to_plain(o.value))}   (manifest: {was})")
    return lines


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style (what `--set` would take)."""
    import json

    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
