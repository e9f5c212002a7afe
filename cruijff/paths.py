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


def cache_dir() -> Path:
    """cruijff's own cache (cluster facts, re-plan stamps): $CRUIJFF_CACHE_DIR, else
    $XDG_CACHE_HOME/cruijff, else ~/.cache/cruijff."""
    import os

    if os.environ.get("CRUIJFF_CACHE_DIR"):
        return Path(os.environ["CRUIJFF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cruijff"
