"""The plan directory's lock: one `plan`, `apply` or `cancel` writes a plan directory at a time.

`flock` on `<output_dir>/.cruijff.lock`, released by the kernel when its holder exits (even by
SIGKILL), so a lock is never stale. The holder writes who it is into the file (pid, command,
since when, what it does), so the loser's message names it, and `status` can ask whether an
apply is alive (`holder`) to tell a queued local job from one whose apply died.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cruijff.errors import StateError

LOCK_FILE = ".cruijff.lock"
# A probe by `status` holds the lock (shared) for microseconds: wait this long before refusing.
ACQUIRE_WAIT_S = 0.5


def _command() -> str:
    args = list(sys.argv[1:])
    return shlex.join(["cruijff", *args])


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode(errors="replace") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe(info: dict) -> str:
    if not info.get("pid"):
        return "(it has not said who it is)"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since") or 0))
    return f"`{info.get('command') or 'cruijff'}` (pid {info['pid']}, since {since})"


@contextmanager
def plan_lock(output_dir: str | Path, what: str = "apply") -> Iterator[dict]:
    """Hold the plan directory's lock; a second holder fails within ACQUIRE_WAIT_S, naming this one.

    `what` (plan, apply, cancel) is recorded for the loser's message and for `holder()`.
    """
    path = Path(output_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StateError(f"{output_dir}: cannot open the lock file {path.name} ({e.strerror})",
                         hint="check that the plan directory exists and is writable") from None
    try:
        deadline = time.monotonic() + ACQUIRE_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    info = _read(fd)
                    for _ in range(10):  # the winner writes its name right after locking
                        if info.get("pid"):
                            break
                        time.sleep(0.02)
                        info = _read(fd)
                    raise StateError(
                        f"{output_dir}: another `cruijff apply` or `cancel` is running on this plan directory, "
                        f"or `plan` is writing it: {_describe(info)}; this command changed nothing",
                        hint="wait for it to finish, or stop it; the lock is released when that process exits",
                    ) from None
                time.sleep(0.02)
        info = {"pid": os.getpid(), "command": _command(), "since": time.time(), "what": what}
        data = json.dumps(info).encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        yield info
    finally:
        os.close(fd)  # releases the flock


def holder(output_dir: str | Path) -> dict | None:
    """Who holds the lock now ({pid, command, since, what}; {} if it has not said yet), or None."""
    path = Path(output_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
