"""chat_json: a folder of `<split>.json`, each a list of `{"messages": [{"role", "content"}]}`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cruijff.data.formats.base import (CHAT, ROLES, DataFormatError, DatasetInfo, Format, kind, load_rows,
                                       split_files, split_rows)


def inspect(p: Path) -> DatasetInfo:
    files = split_files(p, "chat_json", FORMAT.split_suffixes)
    splits: dict[str, int] = {}
    fields: dict[str, None] = {"messages": None}
    for split, f in files.items():
        rows = load_rows(f)
        for i, row in enumerate(rows):
            check_chat_row(row, f, f"row {i}")
            fields.update(dict.fromkeys(row))
        splits[split] = len(rows)
    return DatasetInfo(str(p), "chat_json", splits, tuple(fields), CHAT)


def check_chat_row(row: Any, f: Path, where: str) -> None:
    if not isinstance(row, dict) or "messages" not in row:
        raise DataFormatError(f"{f}: {where} has no 'messages'",
                              hint='rows look like {"messages": [{"role": "user", "content": "..."}]}')
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataFormatError(f"{f}: {where}: 'messages' must be a non-empty list")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataFormatError(f"{f}: {where}, message {j}: needs 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataFormatError(f"{f}: {where}, message {j}: unknown role {m['role']!r}",
                                  hint=f"roles: {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise DataFormatError(f"{f}: {where}, message {j}: content is {kind(m['content'])}, "
                                  "not a string")


def read(p: Path, split: str) -> list[dict]:
    f, rows = split_rows(p, FORMAT, split)
    for i, row in enumerate(rows):
        check_chat_row(row, f, f"row {i}")
    return rows


def checked_columnar(rows: list[dict], f: Path) -> list[dict]:
    """Chat rows of a parquet or arrow split meet the chat_json rules (roles, content)."""
    for i, row in enumerate(rows):
        if row.get("messages") is not None:
            row["messages"] = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m
                               for m in row["messages"]]
            check_chat_row(row, f, f"row {i}")
    return rows


FORMAT = Format(
    "chat_json", 'a folder of <split>.json lists of {"messages": [{"role", "content"}]}', (".json",), in_manifest=True,
    takes_template=False, detect=lambda layout: layout.split_family == "json" and not layout.text_rows,
    inspect=inspect, read=read)
