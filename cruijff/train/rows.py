"""Training reads datasets through the one reader, cruijff.data.formats (issue 15).

There is no second reader here: training, the plan-time check and evaluation read the same rows,
or fail with the same message, for every layout (a .txt text file, a JSON list, a stray file in a
split folder, a role).
"""

from __future__ import annotations

from pathlib import Path

from cruijff.data.formats import DataFormatError, read_split


class DatasetError(DataFormatError):
    """A training dataset cannot be used (beyond its format: empty split, wrong tokenizer, roles)."""


def load_rows(path: str | Path, format: str, split: str) -> list[dict]:
    """The rows of one split, as `cruijff data inspect` and `cruijff plan` see them."""
    return read_split(path, format, split)
