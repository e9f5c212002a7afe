"""The store on disk: publish, lookup, verify, materialise, ls, gc — the one module that touches it.

Layout (`<root>` is the store's folder, docs/store.md):

    <root>/STORE                        the layout's version
    <root>/entries/<k2>/<key>/meta.json what the entry is: key, kind, node, experiment, plan directory,
                                        settings, parents' keys, publisher, time, and every file's size
                                        and sha256
    <root>/entries/<k2>/<key>/files/    the node's outputs (hard links where the file system allows)
    <root>/entries/<k2>/<key>/users/    one small JSON per plan directory that uses the entry
    <root>/near/<near key>/<key>        an empty file per entry: the same kind of job on the same
                                        model and data, for explaining a miss
    <root>/tmp/                         entries being published or removed
    <root>/lock                         gc takes it exclusively, materialise shared

Publishing is atomic: the files and meta.json go into a fresh folder under tmp/, which is then
renamed to its place under entries/ (rename is atomic within one file system); a publish killed
halfway leaves a folder under tmp/ that no lookup ever reads (gc removes it). An entry, once there,
is never replaced: a second publish of the same key finds it there and keeps it. Lookup is a direct
path (entries/<k2>/<key>/meta.json): no listing, however many entries the store holds. Before an
entry is reused its files are verified against meta.json; a changed, truncated or missing file, or an
unreadable meta.json, refuses it with that reason.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

LAYOUT_VERSION = 1
META = "meta.json"
FILES = "files"
USERS = "users"
TMP_MAX_AGE_S = 24 * 3600  # gc removes leftovers of killed publishes older than this


@dataclass(frozen=True)
class Entry:
    key: str
    folder: str  # entries/<k2>/<key>
    meta: dict[str, Any]

    @property
    def path(self) -> Path:
        return Path(self.folder)

    @property
    def files(self) -> dict[str, list]:  # relative path → [size, sha256]
        return self.meta.get("files") or {}

    @property
    def size(self) -> int:
        return sum(int(v[0]) for v in self.files.values())


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def link_or_copy(src: str | Path, dst: str | Path) -> str:
    """A hard link where the file system allows one, else a copy (data and mode). Returns which."""
    try:
        os.link(src, dst)
        return "link"
    except OSError as e:
        if e.errno == errno.EEXIST:
            raise
        shutil.copy2(src, dst)
        return "copy"


class Store:
    """One store folder. Every method is safe beside other plans, applies and gcs on the same store."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # --- layout ---------------------------------------------------------------------------------

    def entry_path(self, key: str) -> Path:
        return self.root / "entries" / key[:2] / key

    def _ensure(self) -> None:
        for sub in ("entries", "near", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        version = self.root / "STORE"
        if not version.exists():
            _write_atomic(version, json.dumps({"layout": LAYOUT_VERSION}) + "\n")

    def _shard(self, key: str) -> Path:
        """entries/<k2>/: in a group-shared store (setgid root) sticky, so nobody removes or
        renames another user's entries (docs/store.md)."""
        shard = self.root / "entries" / key[:2]
        if not shard.is_dir():
            shard.mkdir(parents=True, exist_ok=True)
            if self.root.stat().st_mode & 0o2000:
                try:
                    os.chmod(shard, 0o3775)
                except OSError:
                    pass
        return shard

    @contextmanager
    def _lock(self, exclusive: bool) -> Iterator[None]:
        self._ensure()
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    # --- lookup and verification ----------------------------------------------------------------

    def lookup(self, key: str | None) -> Entry | None:
        """The entry of this key (its meta.json read, nothing else), or None. A direct path."""
        if not key:
            return None
        folder = f"{self.root}/entries/{key[:2]}/{key}"  # strings, not pathlib: 5,000 per plan
        try:
            with open(f"{folder}/{META}", "rb") as f:
                meta = json.loads(f.read())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("key") != key:
            return None
        return Entry(key, folder, meta)

    def near(self, near_key: str, limit: int = 8) -> list[Entry]:
        """The newest entries of the same kind of job on the same model and data: the index's
        files are touched when an entry is published, so their mtimes order them unread."""
        try:
            with os.scandir(self.root / "near" / near_key) as it:
                names = sorted(((e.stat().st_mtime_ns, e.name) for e in it), reverse=True)
        except OSError:
            return []
        found = []
        for _, key in names:
            entry = self.lookup(key)
            if entry is not None:
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    def verify(self, entry: Entry) -> str | None:
        """None when every file is there with its size and checksum; else why the entry is refused."""
        if not entry.files:
            return f"store entry {entry.key}: its meta.json lists no files"
        for rel, (size, digest) in sorted(entry.files.items()):
            path = entry.path / FILES / rel
            try:
                actual = path.stat().st_size
            except OSError:
                return f"store entry {entry.key}: {rel} is missing"
            if actual != size:
                return f"store entry {entry.key}: {rel} is {actual} bytes, {size} when published (truncated or changed)"
            if sha256(path) != digest:
                return f"store entry {entry.key}: {rel} changed after it was published (checksum differs)"
        return None

    # --- publish --------------------------------------------------------------------------------

    def publish(self, key: str, near: list[str] | str | None, meta: dict[str, Any], source: str | Path,
                files: list[str]) -> tuple[Entry | None, str]:
        """Publish source/<files> under key. Returns (entry, what happened): "published",
        "present" (someone published it first) or why not. Never leaves a half entry in place."""
        if self.lookup(key) is not None:
            return self.lookup(key), "present"
        self._ensure()
        tmp = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=self.root / "tmp"))
        try:
            sums: dict[str, list] = {}
            for rel in files:
                src = Path(source) / rel
                dst = tmp / FILES / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                link_or_copy(src, dst)
                sums[rel] = [dst.stat().st_size, sha256(dst)]
            (tmp / USERS).mkdir()
            near = [near] if isinstance(near, str) else list(near or [])
            full = {**meta, "key": key, "near": near, "files": sums, "created": time.time(),
                    "publisher": _user(), "layout": LAYOUT_VERSION}
            _write_atomic(tmp / META, json.dumps(full, sort_keys=True, indent=1) + "\n")
            final = self.entry_path(key)
            self._shard(key)
            try:
                os.rename(tmp, final)  # the commit point: atomic, and never over an existing entry
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    return self.lookup(key), "present"
                raise
            for near_key in near:
                folder = self.root / "near" / near_key
                folder.mkdir(parents=True, exist_ok=True)
                (folder / key).touch()
            return Entry(key, str(final), full), "published"
        except OSError as e:
            return None, f"not published: {e.strerror} ({e.filename})"
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # --- reuse ----------------------------------------------------------------------------------

    def materialise(self, entry: Entry, dest: str | Path, plan_dir: str, node_id: str, experiment: str) -> str | None:
        """Verify the entry, then put its files into dest (hard links, else copies) and record
        the plan directory as a user. None when done; else why it was refused."""
        with self._lock(exclusive=False):  # gc cannot remove it meanwhile
            if not entry.path.is_dir():
                return f"store entry {entry.key} was removed"
            problem = self.verify(entry)
            if problem:
                return problem
            dest = Path(dest)
            for rel in entry.files:
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.cruijff-store")
                tmp.unlink(missing_ok=True)
                link_or_copy(entry.path / FILES / rel, tmp)
                os.replace(tmp, target)
            self.add_user(entry, plan_dir, node_id, experiment)
        return None

    def add_user(self, entry: Entry, plan_dir: str, node_id: str, experiment: str) -> None:
        """users/<digest of the plan directory>.json: which plan directories refer to the entry."""
        name = hashlib.sha256(f"{os.path.abspath(plan_dir)}\0{node_id}".encode()).hexdigest()[:20] + ".json"
        try:
            _write_atomic(entry.path / USERS / name, json.dumps(
                {"plan_dir": os.path.abspath(plan_dir), "node": node_id, "experiment": experiment,
                 "time": time.time()}) + "\n")
        except OSError:
            pass  # another user's entry in a shared store: its users/ may not be ours to write

    # --- housekeeping ---------------------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Every entry (a listing: for ls and gc, never for lookup)."""
        base = self.root / "entries"
        try:
            shards = sorted(os.scandir(base), key=lambda e: e.name)
        except OSError:
            return
        for shard in shards:
            try:
                names = sorted(e.name for e in os.scandir(shard.path))
            except OSError:
                continue
            for name in names:
                entry = self.lookup(name)
                if entry is not None:
                    yield entry

    def users(self, entry: Entry) -> list[dict[str, Any]]:
        out = []
        try:
            names = sorted(os.listdir(entry.path / USERS))
        except OSError:
            return out
        for name in names:
            try:
                out.append(json.loads((entry.path / USERS / name).read_text()))
            except (OSError, ValueError):
                continue
        return out

    def in_use(self, entry: Entry, keys_of: dict[str, dict[str, Any] | None] | None = None) -> list[dict[str, Any]]:
        """The users whose plan directory still refers to the entry (its store-keys.json names the key)."""
        from cruijff.store.keys import KEYS_FILE

        keys_of = {} if keys_of is None else keys_of
        out = []
        for user in self.users(entry):
            plan_dir = user.get("plan_dir") or ""
            if plan_dir not in keys_of:
                try:
                    keys_of[plan_dir] = json.loads((Path(plan_dir) / KEYS_FILE).read_text()).get("keys") or {}
                except (OSError, ValueError, AttributeError):
                    keys_of[plan_dir] = None
            keys = keys_of[plan_dir]
            if keys is not None and entry.key in keys.values():
                out.append(user)
        return out

    def remove(self, entry: Entry) -> None:
        """Out of entries/ in one rename (lookups see it or not, never half), then deleted."""
        tmp = self.root / "tmp" / f"{entry.key}.removed.{os.getpid()}.{time.time_ns()}"
        os.rename(entry.path, tmp)
        near = entry.meta.get("near") or []
        for near_key in [near] if isinstance(near, str) else near:
            (self.root / "near" / near_key / entry.key).unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def gc(self, *, older_than_s: float | None = None, max_size: int | None = None, dry_run: bool = False,
           now: float | None = None) -> dict[str, Any]:
        """Remove entries no plan directory refers to: those older than older_than_s, then the
        oldest until the store holds at most max_size bytes. Leftovers of killed publishes go too."""
        now = time.time() if now is None else now
        removed, kept_in_use, freed = [], [], 0
        with self._lock(exclusive=True):
            entries = sorted(self.entries(), key=lambda e: float(e.meta.get("created") or 0))
            total = sum(e.size for e in entries)
            cache: dict[str, Any] = {}
            for entry in entries:
                old = older_than_s is not None and now - float(entry.meta.get("created") or 0) > older_than_s
                big = max_size is not None and total > max_size
                if not (old or big):
                    continue
                users = self.in_use(entry, cache)
                if users:
                    kept_in_use.append({"key": entry.key, "used_by": [u["plan_dir"] for u in users]})
                    continue
                removed.append({"key": entry.key, "node": entry.meta.get("node"), "size": entry.size,
                                "experiment": entry.meta.get("experiment")})
                total -= entry.size
                freed += entry.size
                if not dry_run:
                    self.remove(entry)
            if not dry_run:
                for leftover in (self.root / "tmp").iterdir():
                    try:
                        if now - leftover.stat().st_mtime > TMP_MAX_AGE_S:
                            shutil.rmtree(leftover, ignore_errors=True)
                    except OSError:
                        continue
        return {"removed": removed, "kept_in_use": kept_in_use, "freed_bytes": freed, "size_bytes": total,
                "dry_run": dry_run}


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return str(os.getuid())


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
