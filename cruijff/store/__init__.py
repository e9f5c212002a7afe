"""The results store shared by experiments (issue 26, docs/store.md).

One interface, three modules:
- keys      (pure) what decides a node's result → its key; near keys and the explanation of a miss;
- entries   (the file system edge) Store: publish, lookup, verify, materialise, ls, gc, locking;
- reuse     a plan against a store: what `plan` reports, what `apply` materialises, what `status`
            publishes.

Where the store is: the manifest's `cluster.store`, else $CRUIJFF_STORE, else $SCRATCH/cruijff-store,
else the user's cache folder; `--no-store`, `cluster.store: off` or CRUIJFF_STORE=off turn it off
(CRUIJFF_STORE=off wins over the manifest: a switch for a session or a test run).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "CRUIJFF_STORE"
OFF = "off"


def store_root(configured: str | None = None, *, no_store: bool = False) -> Path | None:
    """The store's folder for a plan whose manifest says `configured` (cluster.store), or None (off)."""
    env = os.environ.get(ENV, "").strip()
    if no_store or env.lower() == OFF or (configured or "").lower() == OFF:
        return None
    value = configured or env
    if value:
        return Path(os.path.expandvars(os.path.expanduser(value))).absolute()
    scratch = os.environ.get("SCRATCH")
    if scratch:
        return Path(scratch) / "cruijff-store"
    from cruijff.paths import cache_dir

    return cache_dir() / "store"


def open_store(configured: str | None = None, *, no_store: bool = False):
    """The Store (cruijff.store.entries) for these settings, or None when the store is off."""
    root = store_root(configured, no_store=no_store)
    if root is None:
        return None
    from cruijff.store.entries import Store

    return Store(root)
