"""docs/manifest.md is generated from the schema; this keeps them in step."""

from pathlib import Path

from cruijff.compiler.docgen import render
from cruijff.compiler.schema import load_schema

REPO = Path(__file__).resolve().parents[2]


def test_manifest_reference_is_up_to_date():
    assert (REPO / "docs" / "manifest.md").read_text() == render(), \
        "run: python -m cruijff.compiler.docgen > docs/manifest.md"


def _walk(node, path):
    if isinstance(node, dict):
        for key, sub in node.get("properties", {}).items():
            yield f"{path}.{key}", sub
            yield from _walk(sub, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from _walk(node[key], f"{path}.{key}")
        for key, sub in node.get("$defs", {}).items():
            yield from _walk(sub, f"$defs.{key}")


def _described(sub, schema):
    if "description" in sub:
        return True
    if "$ref" in sub:
        node = schema
        for part in sub["$ref"].lstrip("#/").split("/"):
            node = node[part]
        return "description" in node
    return False


def test_every_property_has_a_description():
    schema = load_schema()
    missing = [p for p, sub in _walk(schema, "") if not _described(sub, schema)]
    assert not missing, missing
