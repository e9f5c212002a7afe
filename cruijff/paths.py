"""Where cruijff's shipped files are: in a source checkout, or inside the installed wheel."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """schemas/ or recipes/: the checkout's top-level folder, else the wheel's copy."""
    for candidate in (_HERE.parent / name, _HERE / "_data" / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"{name}/ is missing from the cruijff installation")


def recipes_dir() -> Path:
    return shipped("recipes")
