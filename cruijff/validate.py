"""Schema validation with file:line:col for every error, reported all at once.

Semantic checks the schema cannot express live in cruijff/checks.py.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from cruijff.errors import Problem
from cruijff.schema import load_schema
from cruijff.source import Source

_validator: Draft202012Validator | None = None
NO_LINE_BREAK = "^[^\\n\\r]+$"  # the schema's pattern for values that reach a job script's header


def validator() -> Draft202012Validator:
    global _validator
    if _validator is None:
        _validator = Draft202012Validator(load_schema())
    return _validator


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else None


def _choices_hint(choices: Iterable[str], word: str | None = None) -> str:
    choices = list(choices)
    near = did_you_mean(word, choices) if word is not None else None
    listed = ", ".join(choices[:12]) + (" ..." if len(choices) > 12 else "")
    return f"{near} (allowed: {listed})" if near else f"allowed: {listed}"


def _where(path: Iterable[Any]) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "the manifest"


def _describe(error: ValidationError, source: Source) -> list[Problem]:
    path = list(error.absolute_path)
    where = _where(path)
    v = error.validator
    if v == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        extras = [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []
        return [
            Problem(f"unknown key '{k}' in {where}", source.locate([*path, k], key=True), _choices_hint(allowed, k))
            for k in extras
        ]
    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        desc = error.schema.get("properties", {}).get(missing, {}).get("description")
        return [Problem(f"missing required key '{missing}' in {where}", source.locate(path, key=True),
                        f"add {missing}: ..." + (f" ({desc})" if desc else ""))]
    if v in ("oneOf", "anyOf") and error.context:
        # The branch of the right type says most ('first' → "not one of all, last", not "not an array").
        fitting = [e for e in error.context if e.validator != "type"] or list(error.context)
        inner = best_match(fitting)
        if inner.validator in ("enum", "pattern", "uniqueItems", "minimum", "minItems"):
            return _describe(inner, source)
        desc = error.schema.get("description")
        return [Problem(f"{where}: {inner.message}", source.locate(path),
                        desc or "see `cruijff schema` for the allowed shapes")]
    if v == "uniqueItems" and isinstance(error.instance, list):
        seen: list[Any] = []
        for i, item in enumerate(error.instance):
            if any(type(item) is type(s) and item == s for s in seen):
                return [Problem(f"{where} lists {item!r} twice", source.locate([*path, i]),
                                "remove the repeated value")]
            seen.append(item)
    if v == "enum":
        return [Problem(f"{where}: {error.instance!r} is not allowed", source.locate(path),
                        _choices_hint([str(c) for c in error.validator_value], str(error.instance)))]
    if v == "propertyNames":
        return [Problem(f"{where}: invalid name {error.instance!r}", source.locate(path),
                        "use letters, digits, '.', '_' and '-' only")]
    if v == "pattern" and error.validator_value == NO_LINE_BREAK:
        return [Problem(f"{where} must be one line, not {error.instance!r}", source.locate(path),
                        "remove the line break: it would end up in a job script's header")]
    if v == "pattern":
        desc = error.schema.get("description") or f"it must match {error.validator_value}"
        return [Problem(f"{where}: {error.instance!r} is not a valid value", source.locate(path), desc)]
    if v == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        desc = error.schema.get("description")
        return [Problem(f"{where} must be {expected}, not {type(error.instance).__name__} {error.instance!r}",
                        source.locate(path), desc)]
    return [Problem(f"{where}: {error.message}", source.locate(path), error.schema.get("description"))]


def schema_problems(source: Source) -> list[Problem]:
    """Every schema violation in the manifest, each mapped to file:line:col, in file order."""
    problems: list[Problem] = []
    for error in validator().iter_errors(source.data):
        problems.extend(_describe(error, source))
    problems.sort(key=lambda p: (p.location.line or 0, p.location.col or 0) if p.location else (0, 0))
    return problems
