"""cruijff_kit's evaluation cells in a manifest: evaluation.matrix cell for cell, its decoding
settings, per-task prompts (cross-prompt evaluations) and per-run prompts (prompt variants).

Parts of cruijff.compiler.kit_import.mapping's translator, kept here so each stays short; each
function takes the translator (its notes, remarks, errors and run names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cruijff.compiler.kit_import.reading import as_number, safe_name

if TYPE_CHECKING:
    from cruijff.compiler.kit_import.mapping import _Translator


def prompt_variants(tr: _Translator, m: dict[str, Any], tuned: list[tuple[str, dict[str, Any], int]]) -> None:
    """runs[].parameters.prompt: each distinct template a prompt variant (p1, p2, ...) that the
    grid sweeps, so each run trains and evaluates with its own; a run without one has controls.prompt."""
    if not any("prompt" in point for _, point, _ in tuned):
        return
    default = (m.get("prompt") or {}).get("template")
    names: dict[Any, str] = {}
    for _, point, _ in tuned:
        template = point.get("prompt", default)
        names.setdefault(template, f"p{len(names) + 1}")
        point["prompt"] = names[template]
    m["prompts"] = {name: {"template": template} for template, name in names.items()}
    tr.out.remarks[("prompts",)] = "runs[].parameters.prompt: one variant per distinct prompt (grid.prompt)"


def decoding(tr: _Translator, out: dict[str, Any], ev: dict[str, Any]) -> None:
    """evaluation.do_sample, temperature and max_connections: cruijff's eval settings of those names."""
    sampling = bool(ev.get("do_sample"))
    if sampling:
        out["do_sample"] = True
    if "temperature" in ev:
        temperature = as_number(ev["temperature"])
        if sampling:
            out["temperature"] = temperature
        elif temperature:
            tr.note("evaluation.temperature", ev["temperature"],
                    "inert under greedy decoding (do_sample false), as in cruijff_kit: not imported")
        # temperature 0 without sampling is greedy decoding, cruijff's default: nothing to write
    if "max_connections" in ev:
        out["max_connections"] = as_number(ev["max_connections"])


def task_prompt(entry: dict[str, Any], t: dict[str, Any], trained: dict[str, Any],
                eval_system: str | None) -> bool:
    """A task's prompt/system_prompt (and evaluation.system_prompt) as the task's prompt override.

    cruijff_kit evaluates every cell of the task with it, fine-tunes included: where it differs
    from the training prompt that is a cross-prompt evaluation, which the manifest says explicitly.
    True where it is one.
    """
    override: dict[str, Any] = {}
    if "prompt" in t:
        override["template"] = t["prompt"]
    system = (t["system_prompt"] or None) if "system_prompt" in t else eval_system
    if system != trained["system"]:
        override["system"] = system
    if override:
        entry["prompt"] = override
        if any(trained[k] != v for k, v in override.items()):
            entry["cross_prompt"] = True
    return "cross_prompt" in entry


def matrix(tr: _Translator, out: dict[str, Any], ev: dict[str, Any], task_names: list[str]) -> None:
    """evaluation.matrix, cell for cell: eval.epochs and base_models where every run has the same
    cells (the compact form), else eval.matrix rows (run, tasks, epochs; base_model for controls)."""
    rows = ev.get("matrix")
    if not isinstance(rows, list) or not task_names:
        return
    tuned: dict[str, set[tuple[Any, str]]] = {}
    bases: dict[str, set[str]] = {}
    checkpoints: dict[str, set[str]] = {}  # eval-only runs: without a matrix every task runs on them
    emitted: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("run"):
            tr.error(["evaluation", "matrix", i], "each evaluation.matrix row needs run")
            continue
        if row.get("vis_label"):
            tr.note(f"evaluation.matrix[{i}].vis_label", row["vis_label"], "run names label the status grid")
        kit_name = str(row["run"])
        listed_tasks = row.get("tasks") or task_names
        tasks = [safe_name(str(x)) for x in ([listed_tasks] if isinstance(listed_tasks, str) else listed_tasks)]
        unknown = [x for x in tasks if x not in task_names]
        if unknown:
            tr.error(["evaluation", "matrix", i, "tasks"], f"evaluation.matrix[{i}] names task {unknown[0]!r}, "
                     "which is not under evaluation.tasks")
            continue
        shown = {} if sorted(set(tasks)) == sorted(task_names) else {"tasks": list(dict.fromkeys(tasks))}
        epochs = row.get("epochs")
        epochs = [epochs] if isinstance(epochs, int) and not isinstance(epochs, bool) else epochs
        if epochs is not None and not (isinstance(epochs, list) and all(
                isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in epochs)):
            tr.error(["evaluation", "matrix", i, "epochs"], f"evaluation.matrix[{i}].epochs must be a list of "
                     "0-based epochs, or null", "e.g. epochs: [0, 1]")
            continue
        if kit_name in tr.control_runs or kit_name in tr.checkpoint_runs:
            model = tr.control_runs.get(kit_name) or tr.checkpoint_runs[kit_name]
            (bases if kit_name in tr.control_runs else checkpoints).setdefault(model, set()).update(tasks)
            emitted.append({"base_model": model, **shown})
        elif kit_name in tr.out.runs:
            name = tr.out.runs[kit_name]
            listed = sorted({int(e) for e in epochs}) if epochs else None
            tuned.setdefault(name, set()).update((e, x) for e in (listed or [None]) for x in tasks)
            emitted.append({"run": name, **shown, **({"epochs": listed} if listed else {})})
        # an eval-only run without its checkpoint is an error at runs[]; other rows name no run.
        elif not any(isinstance(r, dict) and r.get("name") == kit_name for r in tr.s.get("runs") or []):
            tr.error(["evaluation", "matrix", i, "run"], f"evaluation.matrix[{i}] names run {kit_name!r}, "
                     "which is not under runs")
    kinds = {frozenset(c) for c in tuned.values()}
    every = next(iter(kinds)) if len(kinds) == 1 else None  # the cells each run has, if the same
    epochs = {e for e, _ in every} if every else set()
    fine_tuned = set(tr.out.runs.values()) - set(tr.checkpoint_runs.values())
    compact = (every is not None and set(tuned) == fine_tuned
               and checkpoints == {name: set(task_names) for name in tr.checkpoint_runs.values()}
               and every == {(e, x) for e in epochs for x in task_names}
               and all(tasks == set(task_names) for tasks in bases.values())
               and set(bases) == set(out.get("base_models") or []))
    if compact:
        if None not in epochs:
            out["epochs"] = sorted(epochs)
        return
    out.pop("base_models", None)
    out["matrix"] = emitted
    tr.out.remarks[("eval", "matrix")] = ("evaluation.matrix, row for row (controls and existing checkpoints "
                                          "are base_model rows)")
