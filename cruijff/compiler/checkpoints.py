"""Models fine-tuned elsewhere (models.<name>.checkpoint, cruijff_kit's eval-only runs): evaluated
only, never in the grid; their folders checked at plan time where they can be seen."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from cruijff.compiler.source import Source
from cruijff.errors import Problem


def checkpoint_models(m: dict[str, Any]) -> list[str]:
    """Models fine-tuned elsewhere (models.<name>.checkpoint): evaluated only, never in the grid."""
    return [name for name, model in m["models"].items() if "checkpoint" in model]


def trainable_models(m: dict[str, Any]) -> list[str]:
    """Models the grid fine-tunes (models.<name>.path): the grid's model axis by default."""
    return [name for name, model in m["models"].items() if "checkpoint" not in model]


def checkpoint_named(source: Source, m: dict[str, Any], name: Any, where: list[Any], what: str) -> Problem | None:
    if name in checkpoint_models(m):
        return Problem(f"{what} names '{name}', an existing checkpoint (models.{name}.checkpoint): it is "
                       "evaluated only, never fine-tuned", source.locate(where),
                       "remove it here; every eval task runs on it without a fine-tune")
    return None


# A checkpoint folder is a model (config.json) or a PEFT adapter (adapter_config.json).
CHECKPOINT_CONFIGS = ("config.json", "adapter_config.json")


def check_checkpoint_folder(source: Source, m: dict[str, Any], name: str) -> list[Problem]:
    """A checkpoint folder reachable here holds a model or an adapter and a tokenizer; an adapter's
    base model (adapter_config.json's base_model_name_or_path) is a folder that exists."""
    import json

    from cruijff.compiler.modelfiles import VOCABULARY, missing, near_names

    folder, where = m["models"][name]["checkpoint"], ["models", name, "checkpoint"]
    if not os.path.isdir(folder):
        if os.path.exists(folder):
            return [Problem(f"model '{name}': checkpoint {folder} is a file, not a folder", source.locate(where),
                            "give the folder that holds config.json or adapter_config.json")]
        from cruijff.compiler.checks import unreachable

        problem = unreachable(source, m, f"model '{name}': checkpoint {folder}", where, later="checked when the job starts")
        near = near_names(folder)
        return [replace(problem, hint=f"did you mean {' or '.join(near)}? ({problem.hint})") if near else problem]
    from cruijff.compiler.modelfiles import Needs

    gone = missing(folder, Needs((), CHECKPOINT_CONFIGS)) + missing(folder, Needs((), VOCABULARY))
    if gone:
        return [Problem(f"model '{name}': checkpoint {folder} has no {', '.join(gone)}", source.locate(where),
                        "give a merged model folder or a PEFT adapter folder, with the tokenizer files "
                        "(cruijff's finetune/<run>/epoch_<n>/model has both)")]
    adapter = os.path.join(folder, "adapter_config.json")
    if os.path.isfile(adapter):
        try:
            base = json.loads(Path(adapter).read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (OSError, ValueError, AttributeError):
            return [Problem(f"model '{name}': {adapter} is not readable JSON", source.locate(where),
                            "give a PEFT adapter folder (adapter_config.json) or a merged model")]
        if isinstance(base, str) and base.startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(base)):
            from cruijff.compiler.checks import unreachable

            return [unreachable(source, m, f"model '{name}': the adapter's base model {base} "
                                f"(base_model_name_or_path in {adapter})", where, later="checked when the job starts")]
    return []


def check_path_or_checkpoint(source: Source, name: str, model: dict[str, Any]) -> list[Problem]:
    """A model is a base model (path) or a checkpoint, exactly one."""
    if "path" not in model and "checkpoint" not in model:
        return [Problem(f"model '{name}' needs path (a base model to fine-tune) or checkpoint "
                        "(a model fine-tuned elsewhere, evaluated only)", source.locate(["models", name], key=True),
                        "add path: /models/<folder> (or checkpoint: <a merged model or adapter folder>)")]
    if "path" in model and "checkpoint" in model:
        return [Problem(f"model '{name}' gives both path and checkpoint",
                        source.locate(["models", name, "checkpoint"], key=True),
                        "path is a base model the grid fine-tunes, checkpoint a fine-tuned model evaluated "
                        "as it is: keep one (two model entries for both)")]
    return []


def check_evaluation_only(source: Source, m: dict[str, Any]) -> list[Problem]:
    """Every model a checkpoint: nothing is fine-tuned, so a swept grid is a mistake and eval is needed."""
    if trainable_models(m):
        return []
    problems = []
    swept = [k for k in m["grid"] if k not in ("model", "dataset", "include", "exclude")]
    if swept:
        problems.append(Problem(f"grid sweeps {', '.join(swept)}, but every model is an existing checkpoint "
                                "(evaluated only): nothing is fine-tuned", source.locate(["grid", swept[0]], key=True),
                                "remove the grid, or add a model with path: to fine-tune"))
    if not m.get("eval"):
        problems.append(Problem("every model is an existing checkpoint and there is no eval section: "
                                "nothing to run", source.locate(["models"], key=True),
                                "add eval.tasks, or a model with path: to fine-tune"))
    return problems
