"""text: a folder of `<split>.json` / `<split>.jsonl` rows `{"text": ...}`, or one `.txt` file (split
"train", one row per non-empty line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cruijff.data.formats.base import (TEXT, DataFormatError, DatasetInfo, Format, load_rows, read_txt,
                                       require_split, split_files, split_rows)


def inspect(p: Path) -> DatasetInfo:
    if p.is_file():
        _expect_txt(p)
        return DatasetInfo(str(p), "text", {"train": len(read_txt(p))}, ("text",), TEXT)
    files = split_files(p, "text", FORMAT.split_suffixes)
    fields: dict[str, None] = {"text": None}
    splits: dict[str, int] = {}
    for split, f in files.items():
        rows = load_rows(f)
        for i, row in enumerate(rows):
            _check_text_row(row, f, i)
            fields.update(dict.fromkeys(row))
        splits[split] = len(rows)
    return DatasetInfo(str(p), "text", splits, tuple(fields), TEXT)


def read(p: Path, split: str) -> list[dict]:
    if p.is_file():
        _expect_txt(p)
        require_split(p, split, ["train"])
        return [{"text": line} for line in read_txt(p)]
    f, rows = split_rows(p, FORMAT, split)
    for i, row in enumerate(rows):
        _check_text_row(row, f, i)
    return rows


def _expect_txt(p: Path) -> None:
    if p.suffix.lower() != ".txt":
        raise DataFormatError(f"{p}: a text dataset file must end in .txt",
                              hint="or use a folder of <split>.json / <split>.jsonl")


def _check_text_row(row: Any, f: Path, i: int) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("text"), str):
        raise DataFormatError(f"{f}: row {i} has no string 'text'", hint='rows look like {"text": "..."}')


FORMAT = Format(
    "text", 'a folder of <split>.json / .jsonl rows {"text"}, or one .txt file', (".json", ".jsonl"), in_manifest=True,
    takes_template=False, detect=lambda layout: layout.file_suffix == ".txt" or layout.text_rows,
    inspect=inspect, read=read)
