"""Run names from the manifest's `finetune.run_name` template (e.g. "{model}_r{lora_rank}").

Without a template a run is named from its grid point (cruijff.compiler.expand.run_name). With one,
each field is the run's value: `model`, `dataset`, or any hyperparameter (swept or fixed), spelled
as in default run names (`format_value`: 3e-4, 0.1, true, q_proj+v_proj) or with a format spec
(`{lr:.0e}`), and made path-safe. The name is a run's directory, its node ids, its SLURM job names
and its W&B run name, so plan checks it: only letters, digits and `. _ + -` outside the fields, no
unknown field, no two runs with the same name (a collision names both runs and the fields that
would tell them apart). Every problem points at the template.
"""

from __future__ import annotations

import re
import string
from dataclasses import replace
from typing import Any

from cruijff.compiler.expand import Run, format_value
from cruijff.errors import Problem

WHERE = ("finetune", "run_name")
MAX_LENGTH = 128
MAX_SHOWN = 3  # collisions reported one by one; the rest are counted
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9._+-]*$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def fields_of(template: str) -> list[tuple[str, str, str | None, str | None]]:
    """(literal text, field, format spec, conversion) parts; ValueError for a malformed template."""
    return list(string.Formatter().parse(template))


def check_template(template: str, allowed: list[str]) -> list[str]:
    """What is wrong with the template itself (not with the names it gives)."""
    try:
        parts = fields_of(template)
    except ValueError as e:
        return [f"finetune.run_name {template!r} is not a valid template: {e}"]
    problems = []
    fields = [f for _, f, _, _ in parts if f is not None]
    if not fields:
        problems.append(f"finetune.run_name {template!r} has no {{field}}: every run would get the same name")
    for text, field, _, conversion in parts:
        if not _SAFE_TEXT.match(text):
            bad = sorted(set(re.sub(r"[A-Za-z0-9._+-]", "", text)))
            problems.append(f"finetune.run_name {template!r} holds {''.join(bad)!r}: run names are directory and "
                            "job names (letters, digits, '.', '_', '+' and '-' only)")
        if field is not None and field not in allowed:
            problems.append(f"finetune.run_name: unknown field {{{field}}}")
        if conversion:
            problems.append(f"finetune.run_name: {{{field}!{conversion}}}: conversions are not supported")
    return problems


def render(template: str, values: dict[str, Any]) -> str:
    out = []
    for text, field, spec, _ in fields_of(template):
        out.append(text)
        if field is not None:
            value = values[field]
            out.append(format_value(value) if not spec else format_value(format(value, spec)))
    return "".join(out)


def name_runs(template: str | None, runs: list[Run], manifest: dict[str, Any], locate
              ) -> tuple[list[Run], list[Problem]]:
    """The runs renamed by the template (unchanged without one), and the problems, at the template."""
    if not template:
        return runs, []
    from cruijff.compiler.checks import hyperparameters_of
    from cruijff.compiler.schema import hyperparameter_names

    allowed = ["model", "dataset", *hyperparameter_names()]
    where = locate(list(WHERE))
    hint = f"fields: {', '.join('{' + f + '}' for f in allowed)}"
    wrong = check_template(template, allowed)
    if wrong:
        return runs, [Problem(w, where, hint) for w in wrong]
    named: list[Run] = []
    seen: dict[str, Run] = {}
    problems: list[Problem] = []
    collisions = 0
    for run in runs:
        values = {"model": run.model, "dataset": run.dataset, **hyperparameters_of(manifest, run)}
        try:
            name = render(template, values)
        except (ValueError, TypeError) as e:  # a format spec that does not fit the value (e.g. {lr:d})
            return runs, [Problem(f"finetune.run_name {template!r} cannot format run '{run.name}': {e}", where, hint)]
        if not _SAFE_NAME.match(name) or len(name) > MAX_LENGTH:
            problems.append(Problem(
                f"finetune.run_name gives run '{run.name}' the name {name!r}, which "
                + ("is too long" if len(name) > MAX_LENGTH else "does not start with a letter or digit"),
                where, f"run names start with a letter or digit and have at most {MAX_LENGTH} characters"))
            continue
        if name in seen:
            collisions += 1
            if collisions > MAX_SHOWN:
                continue
            other = seen[name]
            differ = [k for k in sorted(set(run.values) | set(other.values))
                      if run.values.get(k) != other.values.get(k)]
            problems.append(Problem(
                f"finetune.run_name gives runs '{other.name}' and '{run.name}' the same name {name!r}",
                where, f"add a field that tells them apart: {', '.join('{' + k + '}' for k in differ)}"
                if differ else "make the template name every swept value"))
            continue
        seen[name] = run
        named.append(replace(run, name=name))
    if collisions > MAX_SHOWN:
        problems.append(Problem(f"finetune.run_name gives {collisions - MAX_SHOWN} more run(s) a name another run has",
                                where, "name every swept value in the template"))
    return named, problems


def template_for(named: list[tuple[str, dict[str, Any]]]) -> str | None:
    """The one template that gives every named run its own name (cruijff import: cruijff_kit's
    runs[].name), or None.

    The first run's name is split at '_'; each part is the model, the dataset, a label followed by
    one of the run's values (`rank8`: lora_rank 8), or literal text. The template holds only if it
    renders every run's name exactly, with cruijff's spelling of values (1e-4, 0.5, true).
    """
    from cruijff.compiler.expand import ABBREVIATIONS

    if not named:
        return None
    first, point = named[0]
    parts = []
    for token in first.split("_"):
        if token == point["model"]:
            parts.append("{model}")
            continue
        if token == point["dataset"]:
            parts.append("{dataset}")
            continue
        fits = []
        for key, value in point.items():
            text = format_value(value)
            if key not in ("model", "dataset") and text and token.endswith(text):
                label = token[: len(token) - len(text)]
                named_by = label and (label in key or label == ABBREVIATIONS.get(key))
                fits.append((not named_by, -len(text), key, label))
        if fits:
            _, _, key, label = min(fits)
            parts.append(f"{label}{{{key}}}")
        else:
            parts.append(token.replace("{", "{{").replace("}", "}}"))
    template = "_".join(parts)
    if "{" not in template.replace("{{", "") or check_template(template, ["model", "dataset", *point]):
        return None
    names = [render_or_empty(template, p) for _, p in named]
    if names != [n for n, _ in named] or len(set(names)) != len(names):
        return None
    return template


def render_or_empty(template: str, values: dict[str, Any]) -> str:
    try:
        return render(template, values)
    except (KeyError, ValueError, TypeError):
        return ""
