"""`cruijff store ls` and `cruijff store gc`: the results store shared by experiments (docs/store.md)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from cruijff.commands.jsonout import emit, errors
from cruijff.errors import UsageError

_store_option = click.option("--store", "path", type=click.Path(file_okay=False), default=None,
                             help="The store's folder (default: $CRUIJFF_STORE, else $SCRATCH/cruijff-store, "
                                  "else the user's cache folder).")
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '3600s', '2w' → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not m:
        raise UsageError(f"--older-than {text!r}: not a duration", hint="e.g. 30d, 12h, 90m, 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_size(text: str) -> int:
    """'50G', '500M', '1T', '1024' → bytes (powers of 1000, as `cruijff plan` prints sizes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)b?\s*", (text or "").lower())
    if not m:
        raise UsageError(f"--max-size {text!r}: not a size", hint="e.g. 500G, 2T, 800M")
    return int(float(m.group(1)) * _SIZES[m.group(2)])


def _open(path: str | None):
    from cruijff.store import ENV, store_root
    from cruijff.store.entries import Store

    root = Path(path).absolute() if path else store_root()
    if root is None:
        raise UsageError(f"the results store is off ({ENV}=off)", hint="pass --store PATH")
    return Store(root)


@click.group("store")
def store() -> None:
    """The results store shared by experiments: what it holds, and removing what nobody uses."""


@store.command("ls")
@_store_option
@_json
def ls(path: str | None, as_json: bool) -> None:
    """Each entry: node, experiment it came from, size, age, and the experiments that use it."""
    from cruijff.compiler.estimate import human_bytes

    with errors("store", as_json):
        st = _open(path)
        now = time.time()
        rows = []
        for entry in st.entries():
            users = st.users(entry)
            rows.append({"key": entry.key, "kind": entry.meta.get("kind"), "node": entry.meta.get("node"),
                         "experiment": entry.meta.get("experiment"), "plan_dir": entry.meta.get("plan_dir"),
                         "size_bytes": entry.size, "age_s": round(now - float(entry.meta.get("created") or now), 1),
                         "publisher": entry.meta.get("publisher"),
                         "used_by": sorted({str(u.get("experiment")) for u in users}),
                         "plan_dirs": sorted({str(u.get("plan_dir")) for u in users})})
    if as_json:
        emit("store.ls", {"store": str(st.root), "entries": rows,
                          "size_bytes": sum(r["size_bytes"] for r in rows)})
        return
    click.echo(f"{st.root}: {len(rows)} entr{'y' if len(rows) == 1 else 'ies'}, "
               f"{human_bytes(sum(r['size_bytes'] for r in rows))}")
    for r in rows:
        click.echo(f"  {r['key'][:12]}  {r['node']}  from {r['experiment']}  {human_bytes(r['size_bytes'])}  "
                   f"{_age(r['age_s'])} old  used by: {', '.join(r['used_by']) or '-'}")


@store.command("gc")
@_store_option
@click.option("--older-than", "older_than", metavar="AGE", help="Remove entries older than AGE (30d, 12h, 2w).")
@click.option("--max-size", "max_size", metavar="SIZE", help="Then remove the oldest until the store holds at most SIZE (500G).")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@_json
def gc(path: str | None, older_than: str | None, max_size: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove entries that no plan directory refers to any more (one that does is always kept)."""
    from cruijff.compiler.estimate import human_bytes

    with errors("store", as_json):
        if older_than is None and max_size is None:
            raise UsageError("store gc needs --older-than AGE or --max-size SIZE", hint="e.g. cruijff store gc --older-than 30d")
        st = _open(path)
        result = st.gc(older_than_s=parse_age(older_than) if older_than else None,
                       max_size=parse_size(max_size) if max_size else None, dry_run=dry_run)
    if as_json:
        emit("store.gc", {"store": str(st.root), **result})
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(result['removed'])} entr{'y' if len(result['removed']) == 1 else 'ies'} "
               f"({human_bytes(result['freed_bytes'])}); the store holds {human_bytes(result['size_bytes'])}")
    for r in result["removed"]:
        click.echo(f"  - {r['key'][:12]}  {r['node']}  from {r['experiment']}")
    for k in result["kept_in_use"]:
        click.echo(f"  kept {k['key'][:12]}: still used by {', '.join(k['used_by'])}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
