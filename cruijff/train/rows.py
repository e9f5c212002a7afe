"""Read the rows of one dataset split from JSON, JSONL or Parquet, without the `datasets` cache.

Layouts: a folder holding `<split>.json|.jsonl|.parquet`, or one JSON file
`{"train": [...], "validation": [...], ...}`. A file without splits (a JSON list, JSONL,
Parquet) is the `train` split only.
"""

from __future__ import annotations

import json
from pathlib import Path

from cruijff.errors import CruijffError

SPLIT_SUFFIXES = (".json", ".jsonl", ".parquet")


class DatasetError(CruijffError):
    """A training dataset is missing, malformed, or lacks the requested split."""


def load_rows(path: str | Path, split: str) -> list[dict]:
    p = Path(path)
    if p.is_dir():
        for suffix in SPLIT_SUFFIXES:
            f = p / f"{split}{suffix}"
            if f.is_file():
                return _rows_of_file(f, None)
        have = sorted(x.name for x in p.iterdir() if x.suffix in SPLIT_SUFFIXES)
        raise DatasetError(
            f"no '{split}' split in dataset folder {p}",
            hint=f"expected {split}.json, {split}.jsonl or {split}.parquet there; found {have or 'nothing'}",
        )
    if not p.is_file():
        raise DatasetError(f"dataset not found: {p}", hint="check the dataset path in the manifest")
    return _rows_of_file(p, split)


def _rows_of_file(f: Path, split: str | None) -> list[dict]:
    """Rows of one file; `split` is None when the file itself is the split."""
    try:
        if f.suffix == ".parquet":
            import pyarrow.parquet as pq

            data: object = pq.read_table(f).to_pylist()
        elif f.suffix == ".jsonl":
            data = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"cannot read dataset file {f}: {e}") from None
    if isinstance(data, dict):
        if split is None:
            raise DatasetError(f"{f} holds an object, expected a list of rows for this split")
        if split not in data:
            raise DatasetError(
                f"no '{split}' split in {f}", hint=f"its top-level keys are {sorted(data)}"
            )
        data = data[split]
    elif split not in (None, "train"):
        raise DatasetError(
            f"{f} has no splits, so it has no '{split}' split",
            hint='use {"train": [...], "validation": [...]} or a folder with <split>.json files',
        )
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DatasetError(f"rows in {f} must be a list of objects")
    return data
