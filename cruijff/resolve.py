"""Fill defaults and make paths absolute: the schema-valid manifest becomes the resolved manifest.

The resolved manifest (plain dicts) is what every later stage reads, and what the plan directory
keeps for provenance.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from cruijff.errors import Problem
from cruijff.source import Source

HYPERPARAMETER_DEFAULTS: dict[str, Any] = {
    "epochs": 1,
    "batch_size": 4,
    "gradient_accumulation_steps": 1,
    "lr": 3.0e-4,
    "weight_decay": 0.01,
    "lr_scheduler": "cosine",
    "warmup_steps": 0,
    "lora_rank": 8,
    "lora_alpha": None,  # 2 × lora_rank
    "lora_dropout": 0.0,
    "lora_attn_modules": ["q_proj", "v_proj", "output_proj"],
    "apply_lora_to_mlp": True,
    "max_seq_len": None,  # the family's default
    "max_steps_per_epoch": None,
    "val_every_n_steps": None,
    "seed": 0,
    "dtype": None,  # bf16 on GPU, fp32 on CPU
    "packed": False,
    "train_on_input": False,
    "clip_grad_norm": None,
}

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def expand_path(raw: str, base: Path, env: dict[str, str]) -> tuple[str | None, str | None]:
    """Expand $VARS and ~, make absolute against base; (path, None) or (None, missing variable)."""
    for m in _VAR.finditer(raw):
        name = m.group(1) or m.group(2)
        if name not in env:
            return None, name
    expanded = _VAR.sub(lambda m: env[m.group(1) or m.group(2)], raw)
    p = Path(os.path.expanduser(expanded))
    if not p.is_absolute():
        p = base / p
    return os.path.normpath(str(p)), None


def resolve(source: Source, data: dict[str, Any], env: dict[str, str] | None = None
            ) -> tuple[dict[str, Any], list[Problem]]:
    """Defaults filled, env vars expanded, paths absolute (relative to the manifest's folder)."""
    env = dict(os.environ) if env is None else env
    base = source.path.resolve().parent
    m = copy.deepcopy(data)
    problems: list[Problem] = []

    def path_at(keys: list[Any], value: str) -> str:
        resolved, missing = expand_path(value, base, env)
        if missing is not None:
            problems.append(Problem(f"environment variable {missing} is not set", source.locate(keys),
                                    f"export {missing}=... before running cruijff, or write the path out"))
            return value
        return resolved

    m["output_dir"] = path_at(["output_dir"], m["output_dir"])
    ex = m.setdefault("executor", {})
    ex.setdefault("kind", "auto")
    ex.setdefault("max_parallel", 1)
    cluster = m.setdefault("cluster", {})
    env_block = cluster.setdefault("env", {})
    if "venv" in env_block:
        env_block["venv"] = path_at(["cluster", "env", "venv"], env_block["venv"])
    if cluster.get("mail"):
        cluster.setdefault("mail_type", "END,FAIL")
    for name, model in m["models"].items():
        model["path"] = path_at(["models", name, "path"], model["path"])
    for name, ds in m["datasets"].items():
        ds["path"] = path_at(["datasets", name, "path"], ds["path"])
        gen = ds.get("generate") or {}
        from cruijff.data.generate import path_options  # generator options naming files

        for key in path_options(gen.get("kind", "")):  # relative to the manifest's folder, as written
            if isinstance(gen.get(key), str) and gen[key] and not os.path.isabs(gen[key]):
                gen[key] = os.path.normpath(str(base / gen[key]))
        splits = ds.setdefault("splits", {})
        splits.setdefault("train", "train")
        splits.setdefault("validation", "validation")
        splits.setdefault("test", "test")
    prompt = m.setdefault("prompt", {})
    prompt.setdefault("system", None)
    prompt.setdefault("template", None)
    ft = m["finetune"]
    ft.setdefault("recipe", "lora")
    ft["hyperparameters"] = {**HYPERPARAMETER_DEFAULTS, **ft.get("hyperparameters", {})}
    ft.setdefault("save_epochs", "last")
    ft.setdefault("resources", {})
    if "wandb" in ft:
        ft["wandb"].setdefault("mode", "offline")
    m.setdefault("grid", {})
    if "eval" in m:
        ev = m["eval"]
        ev.setdefault("epochs", "all")
        ev.setdefault("base_models", False)
        ev.setdefault("provider", "hf")
        ev.setdefault("seed", 42)
        ev.setdefault("limit", None)
        ev.setdefault("resources", {})
        for i, t in enumerate(ev["tasks"]):
            t["file"] = path_at(["eval", "tasks", i, "file"], t["file"])
            t.setdefault("args", {})
    return m, problems
