"""A plan made before the package moved into compiler/run/results (issue 15), and how to remake it.

Node hashes cover absolute paths (the manifest's folder, the recipes folder), so the experiment is
planned from one fixed folder, PLACE, on every machine. `python -m tests.premove_plan` (run once,
with the code before the move) wrote tests/fixtures/premove_plan/plan.json and files.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "premove_plan"
PLACE = Path("/tmp/cruijff-premove-plan")


@contextlib.contextmanager
def placed():
    """Copy the tiny experiment (manifest, task file, recipes) to PLACE, holding a lock."""
    PLACE.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{PLACE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.rmtree(PLACE, ignore_errors=True)
        (PLACE / "tasks").mkdir(parents=True)
        shutil.copy(FIXTURE / "tiny.yaml", PLACE / "tiny.yaml")
        shutil.copy(FIXTURE / "capitalization.py", PLACE / "tasks" / "capitalization.py")
        shutil.copytree(FIXTURE / "recipes", PLACE / "recipes")
        try:
            yield PLACE
        finally:
            shutil.rmtree(PLACE, ignore_errors=True)


def compile_placed():
    """(plan as a dict, rendered files) of the tiny experiment planned from PLACE."""
    try:
        from cruijff.compiler.pipeline import compile_manifest
        from cruijff.plan import plan_to_dict
    except ImportError:  # the code before the move
        from cruijff.plan import plan_to_dict
        from cruijff.compiler.pipeline import compile_manifest
    with placed() as place:
        compiled = compile_manifest(place / "tiny.yaml", recipes=str(place / "recipes"), check_paths=False)
        return plan_to_dict(compiled.plan), dict(compiled.files)


if __name__ == "__main__":
    plan, files = compile_placed()
    (FIXTURE / "plan.json").write_text(json.dumps(plan, indent=1, sort_keys=True) + "\n")
    (FIXTURE / "files.json").write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
