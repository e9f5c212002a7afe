"""Dump plain data as YAML, with an optional comment header (torchtune's config convention)."""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML

_yaml: YAML | None = None


def _dumper() -> YAML:
    global _yaml
    if _yaml is None:
        _yaml = YAML(typ="safe", pure=False)
        _yaml.default_flow_style = False
        _yaml.sort_base_mapping_type_on_output = False  # keep our key order
        _yaml.width = 4096
    return _yaml


def dump_yaml(data: Any, header: list[str] | None = None) -> str:
    buf = io.StringIO()
    _dumper().dump(data, buf)
    head = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header or [])
    return head + buf.getvalue()
