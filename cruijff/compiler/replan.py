"""Skip compiling when nothing plan reads has changed since the last plan (issue 27.3).

After a plan is written, a stamp records everything its output depends on:

- cruijff's version and the size and mtime of every module of the installed package (a code edit
  is another compiler), the working directory and `--out`;
- the manifest's bytes, and the values of the environment variables it names ($VAR, ${VAR}, and
  HOME for ~);
- a signature (size and mtime; for a folder, each entry's) of every path the compile looked at:
  model folders (and the folder names beside a missing one: plan suggests near names), datasets
  and generator inputs, task files, the recipes;
- the plan directory's plan.json and each file it wrote (size), so a deleted or edited plan file
  is rewritten;
- what `cruijff plan` printed: warnings, summary, estimate, and the SLURM layout's inputs.

The next `cruijff plan` of the same manifest compares before it parses anything: when all of it
is equal, the plan on disk is the plan this compile would write, and plan prints it again
without compiling or writing. The stamps live in cruijff's cache ($CRUIJFF_CACHE_DIR, ...),
one per manifest path, `--out` and working directory, with the key (code, manifest, environment)
as JSON on its first line (a plan of an edited manifest reads only that line), then the rest
pickled (1.8 MB for 5,000 jobs: twice as fast to write and read as JSON).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cruijff.cores import Ahead

STAMP_VERSION = 3  # 2: the key on a line of its own, before the rest; 3: the rest pickled
SMALL_FILE = 256 * 1024  # watched files up to this size are compared by content, larger ones by size and mtime
_VAR = re.compile(rb"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_PACKAGE = Path(__file__).resolve().parents[1]  # cruijff/


def stamp_file(manifest: str | Path, out: str | None) -> Path:
    from cruijff.paths import cache_dir

    key = f"{os.path.abspath(manifest)}\0{os.path.abspath(out) if out else ''}\0{os.getcwd()}"
    return cache_dir() / "plans" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.stamp"


def code_signature() -> str:
    """Every module of cruijff (and the schema and recipes it ships): path, size, mtime."""
    from cruijff import __version__
    from cruijff.paths import recipes_dir, shipped

    h = hashlib.sha256(__version__.encode())
    for folder in (_PACKAGE, shipped("schemas"), recipes_dir()):
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".py", ".json", ".yaml", ".yml")):
                    st = os.stat(os.path.join(root, name))
                    h.update(f"{root}/{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:24]


NAMES = "names:"  # a watched path with this prefix: the names of the folders in it (not their contents)


def signature(path: str) -> Any:
    """A small file's content hash, a large one's size and mtime; of a folder, its own mtime and
    each entry's size and mtime; 'missing'."""
    if path.startswith(NAMES):
        try:
            with os.scandir(path[len(NAMES):]) as it:
                return sorted(e.name for e in it if e.is_dir())
        except OSError:
            return "missing"
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    if not os.path.isdir(path):
        if st.st_size <= SMALL_FILE:  # by content: an edit within the file system's clock tick counts
            try:
                with open(path, "rb") as f:
                    return hashlib.sha256(f.read()).hexdigest()[:24]
            except OSError:
                return "unreadable"
        return [st.st_size, st.st_mtime_ns]
    entries = []
    try:
        with os.scandir(path) as it:
            for e in it:
                try:
                    est = e.stat()
                    entries.append([e.name, est.st_size, est.st_mtime_ns])
                except OSError:
                    entries.append([e.name, "missing"])
    except OSError:
        return "unreadable"
    return [st.st_mtime_ns, sorted(entries)]


def watched_paths(m: dict[str, Any], recipes: str) -> list[str]:
    """The paths a compile of this resolved manifest looks at (see the module docstring)."""
    paths: list[str] = [recipes]
    for model in m["models"].values():
        folder = model.get("checkpoint", model.get("path"))  # a checkpoint model has no path
        if folder is None:
            continue
        paths.append(folder)
        if not os.path.isdir(folder):  # plan names folders beside a missing one (a typo's fix)
            paths.append(NAMES + os.path.dirname(os.path.normpath(folder)))
        elif "checkpoint" in model and os.path.isfile(os.path.join(folder, "adapter_config.json")):
            paths.append(os.path.join(folder, "adapter_config.json"))  # its base model is checked
    for ds in m["datasets"].values():
        if "generate" in ds:
            paths += [str(v) for v in ds["generate"].values() if isinstance(v, str) and ("/" in v or "." in v)]
        else:
            paths.append(ds["path"])
    for task in (m.get("eval") or {}).get("tasks", []):
        paths.append(task["file"])
    return sorted(set(paths))


def _key(manifest_bytes: bytes, out: str | None, sets: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    names = sorted({(a or b).decode() for a, b in _VAR.findall(manifest_bytes + "\n".join(sets).encode())} | {"HOME"})
    key = {"version": STAMP_VERSION, "code": code_signature(), "cwd": os.getcwd(),
           "out": os.path.abspath(out) if out else None,
           "manifest": hashlib.sha256(manifest_bytes).hexdigest(),
           "env": {n: os.environ.get(n) for n in names}}
    if sets:  # `--set` overrides are part of what was planned
        key["sets"] = list(sets)
    return key


def file_sizes(output_dir: str, files: list[str]) -> list[Any]:
    """Each plan file's size (None: gone). One stat per file: 14,000 of them for 5,000 jobs."""
    stat, prefix = os.stat, output_dir.rstrip("/") + "/"
    try:
        return [stat(prefix + rel).st_size for rel in files]
    except OSError:
        pass  # one is gone: say which
    out = []
    for rel in files:
        try:
            out.append(os.stat(os.path.join(output_dir, rel)).st_size)
        except OSError:
            out.append(None)
    return out


class Unchanged:
    """The stamp of the last plan of this manifest, whose key and watched paths are as they were;
    whether the plan's files are too is being checked meanwhile (a child: cruijff.cores.ahead)."""

    def __init__(self, stamp: dict[str, Any], files: Ahead | None):
        self.stamp = stamp
        self._files = files

    def files_intact(self) -> bool:
        """Every file the plan wrote is there at its size (waits for the check)."""
        intact = self._files.result() if self._files is not None else None
        return _files_intact(self.stamp) if intact is None else intact


def _files_intact(stamp: dict[str, Any]) -> bool:
    return file_sizes(stamp["output_dir"], stamp["files"]) == stamp["sizes"]


def unchanged(manifest: str | Path, out: str | None, sets: tuple[str, ...] | list[str] = ()) -> Unchanged | None:
    """The last plan of this manifest when nothing it depends on changed (its files: see
    Unchanged.files_intact); else None."""
    from cruijff.cores import ahead

    path = stamp_file(manifest, out)
    try:
        with open(path, "rb") as f:
            manifest_bytes = Path(manifest).read_bytes()
            if json.loads(f.readline()) != _key(manifest_bytes, out, sets):
                return None  # another manifest: the rest (1.8 MB for 5,000 jobs) is not even read
            stamp = pickle.load(f)
    except Exception:  # noqa: BLE001 - missing, cut short or damaged (a pickle raises many kinds): compiled
        return None
    if not isinstance(stamp, dict):
        return None
    if any(signature(p) != sig for p, sig in stamp["watched"]):
        return None
    return Unchanged(stamp, ahead(lambda: _files_intact(stamp)))


def record(manifest: str | Path, out: str | None, m: dict[str, Any], recipes: str, output_dir: str,
           files: list[str], shown: dict[str, Any], sets: tuple[str, ...] | list[str] = (),
           sizes: list[int | None] | None = None) -> None:
    """Write the stamp of a plan just written (best effort: without it, the next plan compiles).

    sizes: of `files` as just written, when the caller knows them (one stat per file less)."""
    path = stamp_file(manifest, out)
    try:
        manifest_bytes = Path(manifest).read_bytes()
        stamp = {"watched": [[p, signature(p)] for p in watched_paths(m, recipes)],
                 "output_dir": output_dir, "files": files,
                 "sizes": file_sizes(output_dir, files) if sizes is None else sizes, **shown}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(_key(manifest_bytes, out, sets)).encode() + b"\n")
            pickle.dump(stamp, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        path.with_suffix(".json").unlink(missing_ok=True)  # where stamps of version 2 were
    except (OSError, TypeError, ValueError, pickle.PicklingError):
        try:
            path.unlink()
        except OSError:
            pass


def forget(manifest: str | Path, out: str | None) -> None:
    try:
        stamp_file(manifest, out).unlink()
    except OSError:
        pass
