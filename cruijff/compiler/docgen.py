"""The manifest reference (docs/manifest.md), generated from the JSON Schema so they never drift."""

from __future__ import annotations

import json
from typing import Any

from cruijff.compiler.schema import load_schema

INTRO = """# Manifest reference

<!-- Generated from schemas/experiment.schema.json by `python -m cruijff.compiler.docgen > docs/manifest.md`;
     tests/unit/test_docs.py fails when it is stale. -->

A manifest is one YAML file. Relative paths are relative to the manifest's folder; environment
variables (`$SCRATCH`, `${USER}`) and `~` are expanded in paths. Editors with a YAML language
server autocomplete it when the file starts with
`# yaml-language-server: $schema=../schemas/experiment.schema.json` (or `cruijff schema > file`).

Every default below lives in the schema (`default:`), which the compiler reads too, so the
editor, this page and `cruijff plan` cannot disagree. The defaults that change results are
cruijff_kit 0.3.4's (LoRA rank 64 / alpha 128, lr 1e-4, 100 warm-up steps, seed 14 for training
and evaluation, every epoch saved and evaluated, 20 new tokens per answer); see
docs/cruijff_kit.md for the comparison key by key.

Epochs are 0-based, like torchtune's `epoch_0`. Integers are written without a decimal point (`3`,
not `3.0`); every number must be finite and within the range its row gives. Every value that ends up in a job script is
quoted, except `cluster.env.setup`, whose lines are shell code by design.
"""


def _type(node: dict[str, Any], schema: dict[str, Any]) -> str:
    if "$ref" in node:
        name = node["$ref"].split("/")[-1]
        target = _deref(node["$ref"], schema)
        if name in ("name", "slurm_word", "time"):
            return "string"
        if "properties" in target and name != "properties":
            return f"[{name}](#{name})"
        return _type(target, schema)
    if "enum" in node:
        return " \\| ".join(f"`{v if isinstance(v, str) else json.dumps(v)}`" for v in node["enum"])
    if "oneOf" in node:
        return " or ".join(_type(o, schema) for o in node["oneOf"])
    t = node.get("type", "any")
    if t == "array" and "items" in node:
        return f"list of {_type(node['items'], schema)}"
    if t == "object" and "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        return f"mapping of name → {_type(node['additionalProperties'], schema)}"
    return (" or ".join(t) if isinstance(t, list) else t) + _range(node)


def _range(node: dict[str, Any]) -> str:
    """' (1 to 1000)' for a bounded number: the schema rejects anything outside."""
    low = node.get("minimum", node.get("exclusiveMinimum"))
    high = node.get("maximum")
    if low is None and high is None:
        return ""
    low_text = "" if low is None else (f"> {low:,}" if "exclusiveMinimum" in node else f"{low:,}")
    if high is None:
        return f" ({'≥ ' + low_text if 'exclusiveMinimum' not in node else low_text})"
    return f" ({low_text + ' to ' if low_text else '≤ '}{high:,})" if not low_text.startswith(">") \
        else f" ({low_text}, ≤ {high:,})"


_NONE = object()


def _default_text(value: Any) -> str:
    """A schema default as YAML would spell it; an empty object (created when absent) shows nothing."""
    if value is _NONE or value == {}:
        return ""
    return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"


def _deref(ref: str, schema: dict[str, Any]) -> dict[str, Any]:
    node: Any = schema
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _section(title: str, node: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    lines = [f"## {title}", "", node.get("description", ""), ""]
    props = node.get("properties", {})
    if props:
        required = set(node.get("required", []))
        lines += ["| key | type | required | default | description |", "| --- | --- | --- | --- | --- |"]
        for key, sub in props.items():
            target = _deref(sub["$ref"], schema) if "$ref" in sub else sub
            desc = sub.get("description") or target.get("description", "")
            default = _default_text(sub.get("default", target.get("default", _NONE)))
            desc = desc.replace("|", "\\|")
            lines.append(f"| `{key}` | {_type(sub, schema)} | {'yes' if key in required else ''} | {default} | {desc} |")
        lines.append("")
    return lines


def render() -> str:
    schema = load_schema()
    lines = [INTRO]
    lines += _section("Top level", schema, schema)
    for name in ("cluster", "model", "dataset", "finetune", "resume", "hyperparameters", "resources", "grid", "eval", "task"):
        lines += _section(name, schema["$defs"][name], schema)
    lines += _section("executor", schema["properties"]["executor"], schema)
    lines += _section("prompt", schema["properties"]["prompt"], schema)
    for name in ("prompt_variant", "matrix_row"):  # prompt variants and the evaluation matrix (issue 25)
        lines += _section(name, schema["$defs"][name], schema)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
