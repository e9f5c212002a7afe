"""Write a plan directory so that a failure can never leave a half-written plan.

Every new or changed file is first written next to its target under a temporary name; only when
all of them are there are they moved into place (os.replace, atomic per file), plan.json last:
plan.json is the commit point, and readers trust nothing that it does not list. On any failure
the temporary files are removed and the previous plan.json stays as it was. Files whose text is
unchanged are not rewritten (a re-plan after a small edit touches only what changed), and run
outputs in the same directory (checkpoints, logs, state.db) are never touched. A node whose hash
is the previous plan's has the same files (the hash covers their text): they are checked by size
only, so a re-plan of 5,000 jobs after one edit reads back only the changed nodes' files (and
`cruijff plan` does not even hand over the files of the nodes it kept as they were on disk:
cruijff.compiler.render_cache).

File creation dominates on slow (network or virtual) file systems, so each directory is created
once and each file costs one create and one rename, with no staging tree; a file in a folder this
call created costs one create only (no reader looks there before plan.json names it, and a failure
removes it with its folder). Many files are created by a few threads side by side, and thousands
(the first plan of a big grid) by a process per core (cruijff.cores).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cruijff import plan as plan_json
from cruijff.errors import StateError
from cruijff.lock import plan_lock
from cruijff.plan import Plan, PlanDiff, PlanText, diff_plans, read_plan_text

_TMP_SUFFIX = ".cruijff-tmp"


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


def _unchanged(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as f:  # read only when the sizes are equal (plan.json: 5 MB for 5,000 jobs)
            return os.fstat(f.fileno()).st_size == len(data) and f.read(len(data) + 1) == data
    except OSError:
        return False


def text_size(text: str) -> int:
    """Its size in UTF-8 (an ASCII text's length: no encoding)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _same_size(path: str, size: int) -> bool:
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


def _write_new(path: str, data: bytes, executable: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, 0o666)
    try:
        if executable:
            os.fchmod(fd, 0o755)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


_READ = object()


def write_plan(plan: Plan, files: dict[str, str], old: PlanText | None | object = _READ,
               data: bytes | None = None) -> PlanDiff:
    """Under the plan directory's lock: never while an apply submits from it (cruijff/lock.py).

    old: the plan.json there now, when the caller has read it already; data: plan.json's bytes,
    when the caller has made them (plan_json.encode with the lines of kept nodes)."""
    out = Path(plan.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateError(f"cannot create the plan directory {out}: {e.strerror}",
                         hint="check output_dir in the manifest (or --out) and its permissions") from None
    with plan_lock(out, "plan"):
        return _write_locked(plan, files, out, read_plan_text(out) if old is _READ else old,
                             plan_json.encode(plan) if data is None else data)


def _write_locked(plan: Plan, files: dict[str, str], out: Path, old: PlanText | None,
                  plan_data: bytes) -> PlanDiff:
    root = str(out)
    pending: list[tuple[str, str]] = []  # (temporary, final), in the order they are moved
    direct: list[str] = []  # files written in place into folders this call created
    made: list[str] = []  # directories this call created, removed again on failure
    known: set[str] = {root}
    fresh: set[str] = set()  # of those, the folders this call created: nothing there to replace
    writes: list[tuple[str, bytes, bool]] = []
    # A node whose hash the previous plan.json has too has the same files (the hash covers their
    # text): those are only checked to be there, at their size, not read back.
    hashes = old.hashes() if old else {}
    same = {n.id for n in plan.nodes if hashes.get(n.id) == n.hash}
    committed = False
    try:
        for rel, text in files.items():
            if rel.rpartition("/")[0] in same and _same_size(f"{root}/{rel}", text_size(text)):
                continue
            data = text.encode("utf-8")
            final = os.path.join(root, rel)
            folder = os.path.dirname(final)
            if folder not in known:
                _make_dirs(folder, known, made, fresh)
            if folder in fresh:  # a new folder: no reader looks there until plan.json names it
                writes.append((final, data, rel.endswith(".sbatch")))
                direct.append(final)
                continue
            if _unchanged(final, data):
                continue
            tmp = f"{folder}/.{os.path.basename(final)}{_TMP_SUFFIX}"
            writes.append((tmp, data, rel.endswith(".sbatch")))
            pending.append((tmp, final))
        plan_path = os.path.join(root, plan_json.PLAN_FILE)
        if not _unchanged(plan_path, plan_data):  # the commit point: moved into place last
            tmp = f"{root}/.{plan_json.PLAN_FILE}{_TMP_SUFFIX}"
            writes.append((tmp, plan_data, False))
            pending.append((tmp, plan_path))
        _write_all(writes)
        for tmp, final in pending:
            os.replace(tmp, final)
        committed = True
    except OSError as e:
        raise StateError(f"cannot write the plan into {out}: {e.strerror} ({e.filename})",
                         hint="free disk space or fix permissions, then run `cruijff plan` again; "
                              "the previous plan.json is unchanged") from None
    finally:
        if not committed:
            for tmp in [t for t, _ in pending] + direct:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass  # already moved into place, or never written
            for folder in reversed(made):
                try:
                    os.rmdir(folder)
                except OSError:
                    pass
    return diff_plans(old, plan)


PARALLEL_FROM = 256  # files: below this one thread writes them
FORK_FROM = 2000  # files: from here each core's process writes a share (cruijff.cores)
WRITERS = 8  # threads: file creation waits on the file system (a network one most of all), not on Python


def _write_one(path: str, data: bytes, executable: bool) -> None:
    try:
        _write_new(path, data, executable)
    except FileExistsError:  # left behind by a killed earlier run
        os.unlink(path)
        _write_new(path, data, executable)


def _write_all(writes: list[tuple[str, bytes, bool]]) -> None:
    """Create the files: side by side when there are many (the first plan of a big grid), each
    process of a share with its own threads."""
    from cruijff.cores import on_cores

    if on_cores(_write_threads, writes, min_items=FORK_FROM) is None:
        _write_threads(writes)


def _write_threads(writes: list[tuple[str, bytes, bool]]) -> list[None]:
    if len(writes) < PARALLEL_FROM:
        for w in writes:
            _write_one(*w)
        return [None] * len(writes)
    from concurrent.futures import ThreadPoolExecutor

    def write_share(share: list[tuple[str, bytes, bool]]) -> None:
        for w in share:
            _write_one(*w)

    # one task per thread (a future per file cost more than the write itself on a fast disk)
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        for _ in pool.map(write_share, [writes[i::WRITERS] for i in range(WRITERS)]):
            pass
    return [None] * len(writes)


def _make_dirs(folder: str, known: set[str], made: list[str], fresh: set[str] | None = None) -> None:
    """mkdir -p, remembering what exists: one system call per new directory whose parent is known
    (mkdir first, the parent only when it is missing)."""
    missing = []
    while folder not in known:
        try:
            os.mkdir(folder)
        except FileNotFoundError:  # its parent first
            missing.append(folder)
            folder = os.path.dirname(folder)
            continue
        except FileExistsError:
            if not os.path.isdir(folder):
                raise
        else:
            made.append(folder)
            if fresh is not None:
                fresh.add(folder)
        known.add(folder)
        break
    for d in reversed(missing):
        os.mkdir(d)
        made.append(d)
        known.add(d)
        if fresh is not None:
            fresh.add(d)
