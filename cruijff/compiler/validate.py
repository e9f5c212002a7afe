"""Schema validation with file:line:col for every error, reported all at once.

Semantic checks the schema cannot express live in cruijff/compiler/checks.py. jsonschema is
imported where it validates (about 65 ms): `plan` loads and validates in a child on another core
while it imports the rest of the compiler (`ahead`).
"""

from __future__ import annotations

import math
from functools import cache
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from cruijff.errors import Problem
from cruijff.compiler.schema import load_schema

if TYPE_CHECKING:
    from pathlib import Path

    from jsonschema.exceptions import ValidationError

    from cruijff.compiler.source import Source
    from cruijff.cores import Ahead

NO_LINE_BREAK = "^[^\\n\\r]+$"  # the schema's pattern for values that reach a job script's header


@cache
def strict_validator() -> Any:
    """Draft 2020-12 with a strict integer: JSON Schema counts 1.0 as an integer; torchtune does
    not (`range(1.0)` fails at run time), so an integer here is a Python int and nothing else."""
    from jsonschema import Draft202012Validator, validators

    types = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, x: isinstance(x, int) and not isinstance(x, bool))
    return validators.extend(Draft202012Validator, type_checker=types)


@cache
def validator() -> Any:
    return strict_validator()(load_schema())


def non_finite(value: Any, path: tuple = ()) -> Iterable[tuple[tuple, float]]:
    """Every inf/nan anywhere in the data (YAML's .inf, .nan, and 1e999, which it reads as inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from non_finite(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from non_finite(v, (*path, i))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    import difflib

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
        from jsonschema.exceptions import best_match

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
        if "integer" in expected and isinstance(error.instance, float) and error.instance.is_integer() \
                and abs(error.instance) < 1e15:
            desc = f"write {int(error.instance)}, not {error.instance!r}" + (f" ({desc})" if desc else "")
        return [Problem(f"{where} must be {expected}, not {_type_name(error.instance)} {error.instance!r}",
                        source.locate(path), desc)]
    if v in ("maximum", "minimum", "exclusiveMaximum", "exclusiveMinimum"):
        return [Problem(f"{where}: {error.message}", source.locate(path),
                        error.schema.get("description") or "see `cruijff schema` for the allowed range")]
    return [Problem(f"{where}: {error.message}", source.locate(path), error.schema.get("description"))]


def schema_problems(source: Source) -> list[Problem]:
    """Every schema violation in the manifest, each mapped to file:line:col, in file order."""
    problems: list[Problem] = [
        Problem(f"{_where(path)} is {value!r}, not a finite number", source.locate(list(path)),
                "write a finite number (YAML reads .inf, .nan and values like 1e999 as infinite or not a number)")
        for path, value in non_finite(source.data)]
    errors = [e for e in validator().iter_errors(source.data) if not _about_non_finite(e)]
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    for error in errors:
        if error.validator != "type" and tuple(error.absolute_path) in mistyped:
            continue  # "must be integer" says it; "greater than the maximum" of 1e30 adds nothing
        problems.extend(_describe(error, source))
    problems.sort(key=lambda p: (p.location.line or 0, p.location.col or 0) if p.location else (0, 0))
    return problems


def _type_name(value: Any) -> str:
    """The plain type (ruamel's ScalarFloat is a float to the user)."""
    for t in (bool, int, float, str, list, dict):
        if isinstance(value, t):
            return {"list": "list", "dict": "mapping"}.get(t.__name__, t.__name__)
    return type(value).__name__


def _about_non_finite(error: ValidationError) -> bool:
    """A bound or type error caused by an inf/nan (said once already), not an error of its parent."""
    if isinstance(error.instance, float):
        return not math.isfinite(error.instance)
    return error.validator in ("oneOf", "anyOf", "uniqueItems") and next(iter(non_finite(error.instance)), None) is not None


def load_checked(path: str | Path, overrides: Sequence[str] = ()) -> tuple[Source, tuple, list[Problem]]:
    """The pipeline's first stages, load → overrides → schema: the manifest with its `--set`s
    applied (and those `--set`s, cruijff.compiler.overrides.Override), and its schema problems."""
    from cruijff.compiler.source import load  # ruamel: loaded where it parses (`ahead`: in the child)

    source = load(path)
    applied: tuple = ()
    if overrides:
        from cruijff.compiler.overrides import apply

        applied = tuple(apply(source, overrides))
    return source, applied, schema_problems(source)


def ahead(path: str | Path, overrides: Sequence[str] = ()) -> Ahead | None:
    """load_checked in a child on another core while the caller goes on (None on one core): `plan`
    imports the rest of the compiler meanwhile (this module loads neither ruamel nor jsonschema:
    the child does, 10 ms sooner). Its result is the parsed manifest (unpickled in 1 ms, parsed in
    15-30), or None where the manifest did not load: the caller's own load_checked then reports
    why."""
    from cruijff.cores import ahead as on_another_core

    return on_another_core(lambda: load_checked(path, overrides))
