"""The evaluation matrix: which task runs on which run, epoch and base model, with which prompt and
decoding settings.

Pure functions over the resolved manifest and the runs. Without `eval.matrix` every task runs on
every run's `eval.epochs` (and on `eval.base_models`), as before; with it, exactly the rows' cells.
A run's prompt is its grid `prompt` variant (else the manifest's `prompt`); a task's `prompt`
replaces it at evaluation, which for a fine-tune is a cross-prompt evaluation that the task must
allow (`cross_prompt: true`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cruijff.compiler.checks import hyperparameters_of, resolve_epochs
from cruijff.compiler.expand import Run, _same
from cruijff.compiler.validate import _choices_hint
from cruijff.errors import Problem

PROMPT_KEYS = ("system", "template", "style")
DECODING_KEYS = ("do_sample", "temperature", "top_p", "samples", "reducer", "max_connections")


# --- prompts ---------------------------------------------------------------------------------

def variant(m: dict[str, Any], name: str) -> dict[str, Any]:
    """A named prompt variant with the manifest prompt's values for the keys it leaves out."""
    return {k: m["prompts"][name].get(k, m["prompt"][k]) for k in PROMPT_KEYS}


def run_prompt(m: dict[str, Any], run: Run | None) -> dict[str, Any]:
    """The prompt a run is trained with (a base model: the manifest's prompt)."""
    name = run.values.get("prompt") if run is not None else None
    return variant(m, name) if name is not None else {k: m["prompt"][k] for k in PROMPT_KEYS}


def run_prompt_label(run: Run | None) -> str:
    """The name of the prompt a run is trained with: its variant, or `prompt`."""
    name = run.values.get("prompt") if run is not None else None
    return str(name) if name is not None else "prompt"


def task_prompt(m: dict[str, Any], task: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
    """The prompt a task evaluates with, given the one the model was trained with."""
    override = task.get("prompt")
    if override is None:
        return dict(trained)
    if isinstance(override, str):
        return variant(m, override)
    return {k: override.get(k, trained[k]) for k in PROMPT_KEYS}


def task_prompt_label(task: dict[str, Any]) -> str:
    """The name of a task's prompt override: a variant's, or `<task>.prompt`."""
    override = task.get("prompt")
    return override if isinstance(override, str) else f"{task['name']}.prompt"


# --- decoding --------------------------------------------------------------------------------

def decoding(ev: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """The task's decoding settings over eval's; only those set (absent: greedy, one sample)."""
    return {k: task[k] if k in task else ev[k] for k in DECODING_KEYS if k in task or k in ev}


def decoding_where(ev: dict[str, Any], task: dict[str, Any], i: int, key: str) -> list[Any]:
    return ["eval", "tasks", i, key] if key in task else ["eval", key]


# --- cells -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunCell:
    epoch: int
    task: dict[str, Any]


def _matches(m: dict[str, Any], run: Run, where: dict[str, Any]) -> bool:
    """The run's grid values (model, dataset, prompt, swept hyperparameters) or fixed hyperparameters match."""
    values = {**hyperparameters_of(m, run), **run.values} if where else {}
    return all(k in values and _same(values[k], v) for k, v in where.items())


def _row_runs(m: dict[str, Any], row: dict[str, Any], runs: list[Run]) -> list[Run]:
    if "base_model" in row:
        return []
    if "run" in row:
        return [r for r in runs if r.name == row["run"]]
    return [r for r in runs if _matches(m, r, row.get("where", {}))]


def _row_tasks(row: dict[str, Any], tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tasks if "tasks" not in row or t["name"] in row["tasks"]]


def run_cells(m: dict[str, Any], run: Run, saved: list[int]) -> list[RunCell]:
    """A run's evaluations, epoch by epoch, tasks in manifest order."""
    ev = m.get("eval")
    if not ev:
        return []
    hp = hyperparameters_of(m, run)
    rows = ev.get("matrix")
    if rows is None:
        rows = [{}]
    wanted: set[tuple[int, str]] = set()
    for row in rows:
        if "base_model" in row or run not in _row_runs(m, row, [run]):
            continue
        epochs = resolve_epochs(row.get("epochs", ev["epochs"]), hp["epochs"], saved=saved)
        wanted |= {(e, t["name"]) for e in epochs for t in _row_tasks(row, ev["tasks"])}
    order = {t["name"]: i for i, t in enumerate(ev["tasks"])}
    return [RunCell(e, next(t for t in ev["tasks"] if t["name"] == name))
            for e, name in sorted(wanted, key=lambda c: (c[0], order[c[1]]))]


def base_cells(m: dict[str, Any], runs: list[Run]) -> list[tuple[str, dict[str, Any]]]:
    """(model, task) of every base-model evaluation, models in order of first mention."""
    ev = m.get("eval")
    if not ev:
        return []
    rows = ev.get("matrix")
    if rows is None:
        if not ev["base_models"]:
            return []
        models = list(dict.fromkeys(r.model for r in runs)) if ev["base_models"] is True else list(ev["base_models"])
        return [(model, task) for model in models for task in ev["tasks"]]
    out: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    for row in rows:
        if "base_model" in row:
            for task in _row_tasks(row, ev["tasks"]):
                out.setdefault((row["base_model"], task["name"]), (row["base_model"], task))
    order = {t["name"]: i for i, t in enumerate(ev["tasks"])}
    models = list(dict.fromkeys(model for model, _ in out))
    return sorted(out.values(), key=lambda c: (models.index(c[0]), order[c[1]["name"]]))


# --- checks ----------------------------------------------------------------------------------

def check_prompts(source, m: dict[str, Any]) -> list[Problem]:
    """Variants named in the grid and tasks exist; every prompt in use is one the style allows."""
    problems: list[Problem] = []
    variants = list(m.get("prompts") or {})
    grid = m["grid"]

    def unknown(name: Any, where: list[Any], what: str) -> None:
        if name not in variants:
            hint = (_choices_hint(variants, str(name)) if variants
                    else "declare it under prompts: {NAME: {system, template}}")
            problems.append(Problem(f"{what} names prompt '{name}', which is not declared under prompts",
                                    source.locate(where), hint))

    for i, name in enumerate(grid.get("prompt", [])):
        unknown(name, ["grid", "prompt", i], "grid.prompt")
    for section in ("include", "exclude"):
        for i, entry in enumerate(grid.get(section, [])):
            if "prompt" in entry:
                unknown(entry["prompt"], ["grid", section, i, "prompt"], f"grid.{section}[{i}]")
    ev = m.get("eval") or {}
    for i, task in enumerate(ev.get("tasks", [])):
        if isinstance(task.get("prompt"), str):
            unknown(task["prompt"], ["eval", "tasks", i, "prompt"], f"eval task '{task['name']}'")
    if problems:
        return problems
    for name in variants:
        problems += _style_problems(source, m, variant(m, name), ["prompts", name], f"prompts.{name}")
    for i, task in enumerate(ev.get("tasks", [])):
        if isinstance(task.get("prompt"), dict):
            for base in [run_prompt(m, None), *(variant(m, n) for n in variants)]:
                found = _style_problems(source, m, task_prompt(m, task, base), ["eval", "tasks", i, "prompt"],
                                        f"eval task '{task['name']}'s prompt")
                if found:
                    problems += found
                    break
    return problems


def _style_problems(source, m: dict[str, Any], prompt: dict[str, Any], where: list[Any], what: str) -> list[Problem]:
    if prompt["style"] != "text_completion":
        return []
    problems = []
    if prompt["system"]:
        problems.append(Problem(f"{what} has a system prompt, but its style is text_completion (no system turn)",
                                source.locate(where), "write the instruction into the template and set system: null"))
    for name, ds in m["datasets"].items():
        if ds["format"] == "chat_json":
            problems.append(Problem(f"{what} is text_completion, which builds the prompt from instruct rows, but "
                                    f"dataset '{name}' is chat_json", source.locate(where),
                                    "use instruct rows (input/output), or style: chat"))
    if (m.get("eval") or {}).get("provider", "hf") != "hf":
        problems.append(Problem(f"{what} is text_completion, which is evaluated with the hf provider only",
                                source.locate(where), "set eval.provider: hf"))
    return problems


def check_decoding(source, m: dict[str, Any]) -> list[Problem]:
    """Sampling needs a temperature above 0; temperature and top_p need sampling; reducer needs samples."""
    ev = m.get("eval")
    if not ev:
        return []
    problems = []
    for i, task in enumerate(ev["tasks"]):
        d = decoding(ev, task)

        def at(key: str, task: dict[str, Any] = task, i: int = i):
            return source.locate(decoding_where(ev, task, i, key))

        who = f"eval task '{task['name']}'"
        if d.get("do_sample"):
            if not d.get("temperature"):
                problems.append(Problem(f"{who} samples (do_sample: true) but its temperature is "
                                        f"{d.get('temperature', 'not set')}", at("do_sample"),
                                        "set temperature above 0 (e.g. 0.7), or drop do_sample for greedy decoding"))
        else:
            if d.get("temperature"):
                problems.append(Problem(f"{who} sets temperature {d['temperature']} but decodes greedily",
                                        at("temperature"), "set do_sample: true to sample, or drop temperature"))
            if "top_p" in d:
                problems.append(Problem(f"{who} sets top_p but decodes greedily", at("top_p"),
                                        "set do_sample: true to sample, or drop top_p"))
        if "reducer" in d and d.get("samples", 1) < 2:
            problems.append(Problem(f"{who} sets a reducer but draws one sample per item", at("reducer"),
                                    "set samples above 1, or drop reducer"))
    seen = {}
    return [p for p in problems if seen.setdefault((p.message, p.location), p) is p]


def check_matrix(source, m: dict[str, Any], runs: list[Run]) -> list[Problem]:
    """Rows name declared runs, models and tasks; evaluated epochs are saved; cross-prompt cells allowed."""
    ev = m.get("eval")
    if not ev:
        return []
    problems: list[Problem] = []
    rows = ev.get("matrix")
    task_names = [t["name"] for t in ev["tasks"]]
    if rows is not None:
        if ev["base_models"]:
            problems.append(Problem("eval.base_models and eval.matrix are both set",
                                    source.locate(["eval", "base_models"], key=True),
                                    "with a matrix, evaluate base models with rows `- base_model: NAME`"))
        used: set[str] = set()
        for i, row in enumerate(rows):
            at = ["eval", "matrix", i]
            kinds = [k for k in ("run", "where", "base_model") if k in row]
            if len(kinds) > 1:
                problems.append(Problem(f"eval.matrix[{i}] gives {' and '.join(kinds)}", source.locate(at),
                                        "a row is one run, the runs matching `where`, or one base_model"))
                continue
            for j, name in enumerate(row.get("tasks", [])):
                if name not in task_names:
                    problems.append(Problem(f"eval.matrix[{i}] names task '{name}', which is not under eval.tasks",
                                            source.locate([*at, "tasks", j]), _choices_hint(task_names, name)))
            used |= {t["name"] for t in _row_tasks(row, ev["tasks"])}
            if "base_model" in row:
                if row["base_model"] not in m["models"]:
                    problems.append(Problem(f"eval.matrix[{i}] names base model '{row['base_model']}', which is not "
                                            "declared under models", source.locate([*at, "base_model"]),
                                            _choices_hint(list(m["models"]), row["base_model"])))
                if "epochs" in row:
                    problems.append(Problem(f"eval.matrix[{i}] gives epochs for a base model, which has none",
                                            source.locate([*at, "epochs"], key=True), "remove epochs from this row"))
                continue
            matched = _row_runs(m, row, runs)
            if not matched:
                if "run" in row:
                    problems.append(Problem(f"eval.matrix[{i}] names run '{row['run']}', which the grid does not make",
                                            source.locate([*at, "run"]),
                                            _choices_hint([r.name for r in runs], row["run"])))
                else:
                    problems.append(Problem(f"eval.matrix[{i}].where matches no run",
                                            source.locate([*at, "where"], key=True),
                                            "compare it with the grid's values (`cruijff plan` lists the runs)"))
                continue
            for run in matched:
                hp = hyperparameters_of(m, run)
                saved = resolve_epochs(m["finetune"]["save_epochs"], hp["epochs"])
                wanted = resolve_epochs(row.get("epochs", ev["epochs"]), hp["epochs"], saved=saved)
                unsaved = [e for e in wanted if e not in saved]
                if unsaved:
                    key = [*at, "epochs"] if "epochs" in row else ["eval", "epochs"]
                    problems.append(Problem(f"eval.matrix[{i}] evaluates epoch {unsaved[0]} of run '{run.name}', "
                                            f"which is not saved (saved: {saved})", source.locate(key, key=True),
                                            "add it to finetune.save_epochs, or evaluate a saved epoch"))
                    break
        for i, task in enumerate(ev["tasks"]):
            if task["name"] not in used:
                problems.append(Problem(f"eval task '{task['name']}' is in no row of eval.matrix, so it never runs",
                                        source.locate(["eval", "tasks", i, "name"]),
                                        "add it to a row's tasks, or remove the task", severity="warning"))
    if any(p.severity == "error" for p in problems):
        return problems
    problems += check_cross_prompt(source, m, runs)
    return problems


def cross_prompt(m: dict[str, Any], run: Run, task: dict[str, Any]) -> tuple[str, str] | None:
    """(trained with, evaluated with) when a fine-tune's evaluation uses another prompt; else None."""
    trained = run_prompt(m, run)
    if task_prompt(m, task, trained) == trained:
        return None
    return run_prompt_label(run), task_prompt_label(task)


def check_cross_prompt(source, m: dict[str, Any], runs: list[Run]) -> list[Problem]:
    problems = []
    ev = m["eval"]
    for i, task in enumerate(ev["tasks"]):
        if task.get("cross_prompt") or task.get("prompt") is None:  # no override: every run's own prompt
            continue
        crossed = []
        for run in runs:
            hp = hyperparameters_of(m, run)
            saved = resolve_epochs(m["finetune"]["save_epochs"], hp["epochs"])
            if any(c.task["name"] == task["name"] for c in run_cells(m, run, saved)) and cross_prompt(m, run, task):
                crossed.append(run)
        if crossed:
            trained, evaluated = cross_prompt(m, crossed[0], task)
            more = f" (and {len(crossed) - 1} more run(s))" if len(crossed) > 1 else ""
            problems.append(Problem(
                f"eval task '{task['name']}' evaluates run '{crossed[0].name}'{more}, trained with prompt '{trained}', "
                f"with prompt '{evaluated}'", source.locate(["eval", "tasks", i, "prompt"]),
                "if that is meant (a cross-prompt evaluation), add `cross_prompt: true` to the task; "
                "else drop the task's prompt so runs are evaluated with their own"))
    return problems
