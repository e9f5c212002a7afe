"""Fingerprints of the files a job reads, so that editing one changes the node's hash.

A node's rendered files say *which* task file, dataset and recipe it uses, not what is in them;
without these, fixing a task file or a dataset left `plan` at "0 changed" and the old results in
place. Small files are hashed by content; big ones (over BIG_FILE bytes, e.g. a 10 GB parquet) by
size and modification time, so planning never reads gigabytes. A generated dataset does not exist
at plan time: its prepare node's hash (generator options and code) stands for it, as a parent.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from cruijff.plan import BASE_EVAL, CHECKPOINT_EVAL, EVAL, FINETUNE, PREPARE

BIG_FILE = 64 * 1024 * 1024
MISSING = "missing"

# The parts of cruijff a job of each kind runs (relative to the package): a change there re-runs
# those jobs and no others (an edit of `status` re-runs nothing).
CODE: dict[str, tuple[str, ...]] = {
    PREPARE: ("data",),
    FINETUNE: ("train", "data", "prompting.py"),
    EVAL: ("tasks", "data", "prompting.py", "scores.py", "results/scores.py", "results/eval_resume.py"),
    BASE_EVAL: ("tasks", "data", "prompting.py", "scores.py", "results/scores.py", "results/eval_resume.py"),
    CHECKPOINT_EVAL: ("tasks", "data", "prompting.py", "scores.py", "results/scores.py", "results/eval_resume.py"),
}
_PACKAGE = Path(__file__).resolve().parents[1]  # cruijff/


def _file_digest(path: str, st: os.stat_result) -> str:
    if st.st_size > BIG_FILE:
        return f"size {st.st_size} mtime {st.st_mtime_ns}"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def fingerprint(path: str) -> str:
    """Content hash of a file, or of every file under a directory; 'missing' when not reachable."""
    try:
        st = os.stat(path)
        if not os.path.isdir(path):
            return _file_digest(path, st)
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(f"{os.path.relpath(full, path)}\0{_file_digest(full, os.stat(full))}\0".encode())
        return h.hexdigest()[:16]
    except OSError:
        return MISSING


@lru_cache(maxsize=None)
def code_digest(kind: str) -> str:
    """The source of the cruijff modules a job of this kind runs (read once per process)."""
    h = hashlib.sha256()
    for part in CODE[kind]:
        target = _PACKAGE / part
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for f in files:
            h.update(f"{f.relative_to(_PACKAGE)}\0".encode() + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]
