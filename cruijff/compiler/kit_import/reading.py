"""Reading cruijff_kit's design file: its names and values as cruijff's.

cruijff_kit's hyperparameter and scheduler names, the numbers PyYAML leaves as strings, names made
safe for a manifest, and the @task function of a task script (read with ast, never imported).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

# cruijff_kit's names (setup_finetune.py arguments, torchtune recipe keys) → cruijff's hyperparameters.
HYPERPARAMETERS = {
    "lr": "lr", "learning_rate": "lr", "lora_rank": "lora_rank", "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout", "weight_decay": "weight_decay", "batch_size": "batch_size",
    "epochs": "epochs", "gradient_accumulation_steps": "gradient_accumulation_steps",
    "num_warmup_steps": "warmup_steps", "warmup_steps": "warmup_steps", "max_seq_len": "max_seq_len",
    "seed": "seed", "packed": "packed", "train_on_input": "train_on_input", "lr_scheduler": "lr_scheduler",
    "max_steps_per_epoch": "max_steps_per_epoch", "run_val_every_n_steps": "val_every_n_steps",
}
SCHEDULERS = {"get_cosine_schedule_with_warmup": "cosine", "get_linear_schedule_with_warmup": "linear",
              "get_constant_schedule_with_warmup": "constant"}
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_name(text: Any) -> str:
    name = NAME_UNSAFE.sub("-", str(text)).lstrip("._-")[:64]
    return name or "imported"


def as_number(value: Any) -> Any:
    """cruijff_kit files are read by PyYAML, where 1e-4 is a string: make numeric strings numbers."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def hp_value(key: str, value: Any) -> Any:
    if key == "lr_scheduler" and isinstance(value, str):
        return SCHEDULERS.get(value.rsplit(".", 1)[-1], value)
    return as_number(value)


def save_setting(key: str, value: Any) -> tuple[str, Any] | None:
    """setup_finetune.py's save flags as (finetune key, value); None where cruijff's default says
    the same (save_adapter_weights_only false: the merged model is evaluated). ValueError: unusable."""
    text = str(value).strip().lower()
    if key in ("save_adapter_weights_only", "save_last_epoch_only"):
        if text not in ("true", "false"):
            raise ValueError("true or false")
        if text == "false":
            return None
        return ("export", "adapter") if key == "save_adapter_weights_only" else ("save_epochs", "last")
    if text in ("all", "none"):  # epochs_to_save
        return "save_epochs", text
    try:
        return "save_epochs", sorted({int(str(e).strip()) for e in (value if isinstance(value, list) else text.split(","))})
    except ValueError:
        raise ValueError("all, none or 0-based epochs: 0,2") from None


def short_text(value: Any) -> str:
    text = repr(value) if isinstance(value, (dict, list)) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= 70 else text[:67] + "..."


def task_function(script: str, fallback: str) -> tuple[str, list[str]]:
    """The @task function in a task script and its parameters (read with ast, never imported);
    (fallback, []) when the file is not there or holds several tasks."""
    try:
        tree = ast.parse(Path(script).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return fallback, []

    def is_task(d: ast.expr) -> bool:
        target = d.func if isinstance(d, ast.Call) else d
        return isinstance(target, ast.Name) and target.id == "task"

    tasks = [n for n in tree.body if isinstance(n, ast.FunctionDef) and any(is_task(d) for d in n.decorator_list)]
    if len(tasks) != 1:
        return fallback, []
    args = tasks[0].args
    return tasks[0].name, [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
