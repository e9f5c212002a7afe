"""Model folders, checked at plan time: a typo in `path:` costs seconds here, hours in a queue.

A folder reachable from here must hold what a job reads from it: `config.json`, a tokenizer
(its vocabulary file) and the checkpoint files its family (or `checkpoint_files`) names. A folder
that is not reachable here (it lives on the cluster) is one warning, and its job scripts check it
first (`python -m cruijff.preflight`, rendered by the pipeline) so the job fails at once with a
clear error instead of a torchtune or Hugging Face traceback.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

from cruijff.compiler.families import FAMILIES

CONFIG = "config.json"
# One of these holds the vocabulary Hugging Face's AutoTokenizer reads (cruijff.train.tokenizer).
VOCABULARY = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class Needs:
    """What a job reads from a model folder: every file of `files`, and one of `any_of`."""

    files: tuple[str, ...]
    any_of: tuple[str, ...] = VOCABULARY


def checkpoint_names(spec: Any) -> list[str]:
    """torchtune's checkpoint_files (a list, or {filename_format, max_filename}) as file names."""
    if isinstance(spec, dict):
        fmt, last = spec.get("filename_format"), str(spec.get("max_filename", ""))
        if isinstance(fmt, str) and last.isdigit():
            width = len(last)
            return [fmt.format(str(i).zfill(width), last) for i in range(1, int(last) + 1)]
        return []
    return [str(f) for f in spec or []]


def needs(model: dict[str, Any]) -> Needs:
    family = FAMILIES.get(model.get("family", ""))
    spec = family.checkpoint_files if family else model.get("checkpoint_files", [])
    return Needs((CONFIG, *checkpoint_names(spec)))


def missing(folder: str, need: Needs) -> list[str]:
    """The files a job needs that `folder` lacks; a missing vocabulary is named by its first choice."""
    gone = [f for f in need.files if not os.path.isfile(os.path.join(folder, f))]
    if need.any_of and not any(os.path.isfile(os.path.join(folder, f)) for f in need.any_of):
        gone.append(" or ".join(need.any_of))
    return gone


def near_names(folder: str) -> list[str]:
    """Folders beside a missing one whose names are close to it (a typo's likely fix)."""
    parent, name = os.path.split(os.path.normpath(folder))
    try:
        siblings = [e.name for e in os.scandir(parent) if e.is_dir()]
    except OSError:
        return []
    return [os.path.join(parent, n) for n in difflib.get_close_matches(name, siblings, n=2, cutoff=0.6)]
