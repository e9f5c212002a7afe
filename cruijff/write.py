"""Write a plan directory so that a failure can never leave a half-written plan.

Every file is first written into a staging folder next to the plan; only when all of them are
there are they moved into place (os.replace, atomic per file), plan.json last: plan.json is the
commit point, and readers trust nothing that it does not list. Run outputs in the same directory
(checkpoints, logs, state.db) are never touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from cruijff import artifact
from cruijff.artifact import PlanDiff, diff_plans
from cruijff.errors import CruijffError, StateError
from cruijff.model import Plan


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def previous_plan(out: Path) -> Plan | None:
    if not (out / artifact.PLAN_FILE).exists():
        return None
    try:
        return artifact.load_plan(out)
    except CruijffError:
        return None  # unreadable or older: everything counts as added


def write_plan(plan: Plan, files: dict[str, str]) -> PlanDiff:
    out = Path(plan.output_dir)
    old = previous_plan(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".cruijff-staging-"))
    except OSError as e:
        raise StateError(f"cannot create the plan directory {out}: {e.strerror}",
                         hint="check output_dir in the manifest (or --out) and its permissions") from None
    try:
        for rel, text in files.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            if rel.endswith(".sbatch"):
                target.chmod(0o755)
        (staging / artifact.PLAN_FILE).write_text(artifact.dumps(plan), encoding="utf-8")
        for rel in [*files, artifact.PLAN_FILE]:
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, dest)
    except OSError as e:
        raise StateError(f"cannot write the plan into {out}: {e.strerror} ({e.filename})",
                         hint="free disk space or fix permissions, then run `cruijff plan` again; "
                              "the previous plan.json is unchanged") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return diff_plans(old, plan)
