"""Grid → runs: the Cartesian product with GitHub Actions' include/exclude rules, and stable names.

Pure functions over plain data; a run's name depends only on its own grid point, so it survives
unrelated edits of the manifest.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from cruijff.errors import Problem

SPECIAL_KEYS = ("include", "exclude")
# Short labels for run names; any other key is used as it is.
ABBREVIATIONS = {
    "lora_rank": "r", "lora_alpha": "a", "lora_dropout": "do", "lr": "lr", "batch_size": "bs",
    "epochs": "ep", "seed": "seed", "weight_decay": "wd", "warmup_steps": "wu",
    "lr_scheduler": "sched", "gradient_accumulation_steps": "ga", "max_seq_len": "len",
    "apply_lora_to_mlp": "mlp", "lora_attn_modules": "attn", "dtype": "dt", "packed": "packed",
    "train_on_input": "toi", "max_steps_per_epoch": "steps", "val_every_n_steps": "val",
    "clip_grad_norm": "clip",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class Run:
    """One fine-tune: a grid point. origin is the manifest path that produced it (for errors)."""

    name: str
    point: tuple[tuple[str, Any], ...]  # canonical order: model, dataset, then sorted keys
    origin: tuple[Any, ...]

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.point)

    @property
    def model(self) -> str:
        return self._value("model")

    @property
    def dataset(self) -> str:
        return self._value("dataset")

    def _value(self, key: str) -> Any:
        """A point's value without building `values` (read 25,000 times in a 5,000-job plan)."""
        for k, v in self.point:
            if k == key:
                return v
        raise KeyError(key)


def format_value(value: Any) -> str:
    """Compact, filename-safe text for a value: 3e-4, 0.1, 64, true, q_proj+v_proj."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            text = str(value)  # the schema rejects these; never crash on one
        elif value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e6):
            mantissa, exponent = f"{value:.6e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            text = f"{mantissa}e{int(exponent)}"
        else:
            text = f"{value:.6g}"
    elif isinstance(value, (list, tuple)):
        text = "+".join(format_value(v) for v in value)
    elif value is None:
        text = "none"
    else:
        text = str(value)
    return _UNSAFE.sub("-", text)


def run_name(point: dict[str, Any]) -> str:
    parts = [format_value(point["model"]), format_value(point["dataset"])]
    for key in sorted(k for k in point if k not in ("model", "dataset")):
        label = ABBREVIATIONS.get(key, key)
        text = format_value(point[key])
        parts.append(f"{label}{text}" if text[:1].isdigit() else f"{label}-{text}")
    return "_".join(parts)


def canonical(point: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    keys = ["model", "dataset", *sorted(k for k in point if k not in ("model", "dataset"))]
    return tuple((k, _freeze(point[k])) for k in keys if k in point)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else _freeze(a) == _freeze(b)


def axes_of(grid: dict[str, Any], models: list[str], datasets: list[str]) -> dict[str, list[Any]]:
    """The grid's lists; model and dataset default to every declared one."""
    axes = {k: list(v) for k, v in grid.items() if k not in SPECIAL_KEYS}
    ordered: dict[str, list[Any]] = {"model": axes.pop("model", list(models)),
                                     "dataset": axes.pop("dataset", list(datasets))}
    ordered.update(axes)
    return ordered


def expand(grid: dict[str, Any], models: list[str], datasets: list[str]) -> tuple[list[Run], list[tuple[tuple, Problem]]]:
    """All runs of the grid, in product order then include order; problems carry a manifest path."""
    axes = axes_of(grid, models, datasets)
    keys = list(axes)
    combos = [dict(zip(keys, values)) for values in itertools.product(*axes.values())]
    problems: list[tuple[tuple, Problem]] = []

    for entry in grid.get("exclude", []):
        combos = [c for c in combos if not all(k in c and _same(c[k], v) for k, v in entry.items())]
    origins: list[tuple] = [("grid",)] * len(combos)
    originals = list(range(len(combos)))

    for i, entry in enumerate(grid.get("include", [])):
        matched = False
        for ci in originals:
            combo = combos[ci]
            if all(_same(combo[k], v) for k, v in entry.items() if k in axes):
                # Added keys may be overwritten by later includes; original values never are.
                combo.update(entry)
                matched = True
        if not matched:
            new = dict(entry)
            for axis in ("model", "dataset"):
                if axis not in new:
                    if len(axes[axis]) == 1:
                        new[axis] = axes[axis][0]
                    else:
                        problems.append((("grid", "include", i), Problem(
                            f"grid.include[{i}] adds a new run but does not say which {axis}",
                            hint=f"add {axis}: one of {', '.join(map(str, axes[axis]))}")))
            combos.append(new)
            origins.append(("grid", "include", i))

    runs: list[Run] = []
    seen: dict[str, tuple] = {}
    for combo, origin in zip(combos, origins):
        if "model" not in combo or "dataset" not in combo:
            continue
        name = run_name(combo)
        if name in seen:
            hint = ("the same grid point appears twice; drop the duplicate include entry or make it differ"
                    if origin != ("grid",) else
                    "two grid values print the same in run names (e.g. 1e-4 and 1.0000001e-4); make them differ more")
            problems.append((origin, Problem(f"two runs would both be named '{name}'", hint=hint)))
            continue
        seen[name] = origin
        runs.append(Run(name=name, point=canonical(combo), origin=origin))
    return runs, problems
