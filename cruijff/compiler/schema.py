"""The manifest JSON Schema, shipped in schemas/ (and inside the wheel as package data)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from cruijff.paths import shipped

SCHEMA_NAME = "experiment.schema.json"


def schema_path() -> Path:
    return shipped("schemas") / SCHEMA_NAME


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text())


def hyperparameter_names() -> list[str]:
    return list(load_schema()["$defs"]["hyperparameters"]["properties"])


def subschema(pointer: str) -> dict[str, Any]:
    """A part of the schema by JSON pointer, e.g. '#/$defs/hyperparameters/properties/lr'."""
    node: Any = load_schema()
    for part in pointer.lstrip("#/").split("/"):
        node = node[part]
    return node
