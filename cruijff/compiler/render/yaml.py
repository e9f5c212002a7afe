"""Dump plain data as YAML, with an optional comment header (torchtune's config convention).

ruamel's pure-Python emitter costs ~3 ms per file, which dominated `cruijff plan` for large grids.
Our configs are plain block-style trees of dicts, lists and scalars, so a small emitter writes them
directly and asks ruamel only how to spell each scalar that is not obviously plain (cached: the
same few templates, floats and prompts recur in every file). Anything unusual (a multi-line
scalar, a key that needs quoting, a type we do not know) falls back to ruamel for the whole
document, so the output is always byte-for-byte what ruamel would write.
"""

from __future__ import annotations

import io
import re
from functools import lru_cache
from typing import Any

from ruamel.yaml import YAML

_yaml: YAML | None = None

# Strings ruamel always writes plain in block context: they start with a letter, "_" or "/", hold no
# indicator or space, and cannot be read back as a bool, null or number (those start otherwise,
# apart from the words below).
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./+-]*\Z")
_RESERVED = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null"})


class _Fallback(Exception):
    """The fast emitter met something only ruamel should decide; dump the document with ruamel."""


def _dumper() -> YAML:
    global _yaml
    if _yaml is None:
        _yaml = YAML(typ="safe", pure=False)
        _yaml.default_flow_style = False
        _yaml.sort_base_mapping_type_on_output = False  # keep our key order
        _yaml.width = 4096
    return _yaml


def _ruamel(data: Any) -> str:
    buf = io.StringIO()
    _dumper().dump(data, buf)
    return buf.getvalue()


@lru_cache(maxsize=4096)
def _spelled(value: str) -> str:
    """How ruamel writes one string as a mapping value."""
    return _spelled_any(value)


def _spelled_float(value: float) -> str:
    """ruamel's float representer (YAML 1.2: repr in lower case; nan and inf spelled out), whose
    every float is a plain scalar: asking ruamel costs 1 ms a value (a 1,000-value lr sweep: 1 s).
    tests/unit/test_render_torchtune.py compares the two on thousands of floats."""
    if value != value:
        return ".nan"
    if value in (_INF, -_INF):
        return ".inf" if value > 0 else "-.inf"
    return repr(value).lower()


_INF = float("inf")


def _spelled_any(value: Any) -> str:
    text = _ruamel({"k": value})
    # str.splitlines knows every line break YAML does (NEL, LS, PS ...), and a few more: fine.
    if not text.startswith("k: ") or len(text.splitlines()) != 1 or not text.endswith("\n") or len(text) > 1000:
        raise _Fallback
    return text[3:-1]


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is str:
        if _PLAIN.match(value) and value.lower() not in _RESERVED:
            return value
        return _spelled(value)
    if kind is int:
        return str(value)
    if kind is float:
        return _spelled_float(value)
    raise _Fallback


_KEYS: dict[str, str] = {}  # keys known to be plain (the same few recur in every file)


def _key(key: Any) -> str:
    if key in _KEYS:
        return key
    if type(key) is not str or not _PLAIN.match(key) or key.lower() in _RESERVED or len(key) > 128:
        raise _Fallback
    _KEYS[key] = key
    return key


def _mapping(data: dict, indent: str, out: list[str], first_prefix: str | None = None) -> None:
    """Block mapping; with first_prefix the first key goes on the current line (after '- ')."""
    for i, (k, v) in enumerate(data.items()):
        lead = first_prefix if (i == 0 and first_prefix is not None) else indent
        key = _key(k)
        if type(v) is dict and v:
            out.append(f"{lead}{key}:\n")
            _mapping(v, indent + "  ", out)
        elif type(v) is list and v:
            out.append(f"{lead}{key}:\n")
            _sequence(v, indent, out)  # indentless: dashes line up with the key
        else:
            out.append(f"{lead}{key}: {_value(v)}\n")


def _sequence(data: list, indent: str, out: list[str], first_prefix: str | None = None) -> None:
    for i, v in enumerate(data):
        lead = (first_prefix if (i == 0 and first_prefix is not None) else indent) + "- "
        if type(v) is dict and v:
            _mapping(v, indent + "  ", out, first_prefix=lead)
        elif type(v) is list and v:
            _sequence(v, indent + "  ", out, first_prefix=lead)
        else:
            out.append(f"{lead}{_value(v)}\n")


def _value(v: Any) -> str:
    if type(v) is dict:
        return "{}"
    if type(v) is list:
        return "[]"
    return _scalar(v)


def _fast(data: Any) -> str:
    if type(data) is not dict or not data:
        raise _Fallback
    out: list[str] = []
    _mapping(data, "", out)
    return "".join(out)


def dump_yaml(data: Any, header: list[str] | None = None) -> str:
    try:
        body = _fast(data)
    except _Fallback:
        body = _ruamel(data)
    # One comment line per header line, even if a line holds a line break (a path, a name).
    lines = [part for line in header or [] for part in (line.splitlines() or [""])]
    head = "".join(f"# {line}\n".replace("# \n", "#\n") for line in lines)
    return head + body
