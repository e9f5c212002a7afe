"""instruct_json: one JSON file `{"train": [{"input": ..., "output": ...}], "validation": [...]}`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cruijff.data.formats.base import (INSTRUCT, DataFormatError, DatasetInfo, Format, expect_file, kind,
                                       load_json, require_split)


def inspect(p: Path) -> DatasetInfo:
    expect_file(p, "instruct_json", "one .json file")
    data = instruct_splits(p)
    fields: dict[str, None] = {"input": None, "output": None}
    for split, rows in data.items():
        for i, row in enumerate(rows):
            check_instruct_row(row, p, f"{split}[{i}]")
            fields.update(dict.fromkeys(row))
    return DatasetInfo(str(p), "instruct_json", {s: len(r) for s, r in data.items()},
                       tuple(fields), INSTRUCT)


def instruct_splits(p: Path) -> dict[str, list]:
    data = load_json(p)
    if isinstance(data, list):
        raise DataFormatError(
            f"{p}: top level is a list, but instruct_json needs an object of splits",
            hint='write {"train": [...], "validation": [...], "test": [...]} '
                 "(a list of {messages} rows is one chat_json split: give its folder)",
        )
    if not isinstance(data, dict):
        raise DataFormatError(f"{p}: top level is {kind(data)}, but instruct_json needs an object "
                              'of splits like {"train": [...]}')
    if not data:
        raise DataFormatError(f"{p}: no splits", hint='write {"train": [{"input": ..., "output": ...}]}')
    for split, rows in data.items():
        if not isinstance(rows, list):
            raise DataFormatError(f"{p}: split {split!r} is {kind(rows)}, not a list of rows")
    return data


def check_instruct_row(row: Any, p: Path, where: str) -> None:
    if not isinstance(row, dict):
        raise DataFormatError(f"{p}: {where} is {kind(row)}, not an object with input and output")
    for key in ("input", "output"):
        if key not in row:
            raise DataFormatError(f"{p}: {where} is missing {key!r}",
                                  hint='every row needs "input" and "output"')
        if not isinstance(row[key], str):
            raise DataFormatError(f"{p}: {where}.{key} is {kind(row[key])}, not a string",
                                  hint="write values as strings, e.g. \"1\" rather than 1")


def read(p: Path, split: str) -> list[dict]:
    expect_file(p, "instruct_json", "one .json file")
    data = instruct_splits(p)
    require_split(p, split, list(data))
    rows = data[split]
    for i, row in enumerate(rows):
        check_instruct_row(row, p, f"{split}[{i}]")
    return rows


FORMAT = Format(
    "instruct_json", 'one JSON file {"train": [{"input", "output"}], ...}', (), in_manifest=True, takes_template=True,
    detect=lambda layout: layout.file_suffix == ".json", inspect=inspect, read=read)
