"""Fill defaults and make paths absolute: the schema-valid manifest becomes the resolved manifest.

The resolved manifest (plain dicts) is what every later stage reads, and what the plan directory
keeps for provenance.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from cruijff.errors import Problem
from cruijff.compiler.schema import load_schema
from cruijff.compiler.source import Source


_MISSING = object()


def _deref(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """A schema node with its $ref followed; the referring node's own keys (default) win."""
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def fill_defaults(value: Any, node: dict[str, Any], root: dict[str, Any]) -> None:
    """Fill every absent key that has a `default` in the schema, recursively, in place.

    The schema is the one home of every default (docs/manifest.md shows them): an object whose
    schema default is {} is created when absent, so its own defaults apply too.
    """
    node = _deref(node, root)
    if isinstance(value, dict):
        props = node.get("properties", {})
        for key, sub in props.items():
            if key not in value:
                default = _deref(sub, root).get("default", _MISSING)
                if default is _MISSING:
                    continue
                value[key] = copy.deepcopy(default)
            fill_defaults(value[key], sub, root)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in props:
                    fill_defaults(item, extra, root)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for item in value:
            fill_defaults(item, node["items"], root)


def schema_defaults(pointer: str) -> dict[str, Any]:
    """The defaults of one object in the schema, e.g. '#/$defs/hyperparameters'."""
    root = load_schema()
    out: dict[str, Any] = {}
    fill_defaults(out, {"$ref": pointer}, root)
    return out


HYPERPARAMETER_DEFAULTS: dict[str, Any] = schema_defaults("#/$defs/hyperparameters")

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_path(raw: str, base: Path, env: dict[str, str]) -> tuple[str | None, str | None]:
    """Expand $VARS and ~, make absolute against base; (path, None) or (None, missing variable)."""
    for m in _VAR.finditer(raw):
        name = m.group(1) or m.group(2)
        if name not in env:
            return None, name
    expanded = _VAR.sub(lambda m: env[m.group(1) or m.group(2)], raw)
    p = Path(os.path.expanduser(expanded))
    if not p.is_absolute():
        p = base / p
    return os.path.normpath(str(p)), None


def resolve(source: Source, data: dict[str, Any], env: dict[str, str] | None = None
            ) -> tuple[dict[str, Any], list[Problem]]:
    """Defaults filled (from the schema), env vars expanded, paths absolute (relative to the manifest's folder)."""
    env = dict(os.environ) if env is None else env
    base = source.path.resolve().parent
    m = copy.deepcopy(data)
    problems: list[Problem] = []

    def path_at(keys: list[Any], value: str) -> str:
        resolved, missing = expand_path(value, base, env)
        if missing is not None:
            problems.append(Problem(f"environment variable {missing} is not set", source.locate(keys),
                                    f"export {missing}=... before running cruijff, or write the path out"))
            return value
        return resolved

    fill_defaults(m, load_schema(), load_schema())
    m["output_dir"] = path_at(["output_dir"], m["output_dir"])
    env_block = m["cluster"]["env"]
    if "venv" in env_block:
        env_block["venv"] = path_at(["cluster", "env", "venv"], env_block["venv"])
    if m["cluster"].get("store"):  # the results store (docs/store.md); "off" turns it off
        if m["cluster"]["store"] != "off":
            m["cluster"]["store"] = path_at(["cluster", "store"], m["cluster"]["store"])
    for name, model in m["models"].items():
        for key in ("path", "checkpoint"):  # a checkpoint model (evaluated only) may have no path
            if key in model:
                model[key] = path_at(["models", name, key], model[key])
    for name, ds in m["datasets"].items():
        ds["path"] = path_at(["datasets", name, "path"], ds["path"])
        gen = ds.get("generate") or {}
        from cruijff.data.generate import path_options  # generator options naming files

        for key in path_options(gen.get("kind", "")):  # relative to the manifest's folder, as written
            if isinstance(gen.get(key), str) and gen[key] and not os.path.isabs(gen[key]):
                gen[key] = os.path.normpath(str(base / gen[key]))
    for i, t in enumerate(m.get("eval", {}).get("tasks", [])):
        t["file"] = path_at(["eval", "tasks", i, "file"], t["file"])
    return m, problems
