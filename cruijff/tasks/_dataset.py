"""Dataset splits → inspect Samples whose prompt is built exactly as in training.

Formats (the same names the manifest and the training dataset component use):
- instruct_json: one JSON file {"train": [{"input", "output"}], "validation": [...], "test": [...]}
- chat_json: a folder of <split>.json files, each a list of {"messages": [{"role", "content"}]}
- parquet: a folder of <split>.parquet files with columns input/output (or messages)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cruijff.errors import CruijffError
from cruijff.prompting import build_messages

FORMATS = ("instruct_json", "chat_json", "parquet")


class TaskDataError(CruijffError):
    """An evaluation dataset is missing, malformed or lacks the requested split."""


def read_split(data: str | Path, format: str, split: str) -> list[dict[str, Any]]:
    """The raw records of one split: dicts with input/output or messages."""
    path = Path(data)
    if format == "instruct_json":
        return _instruct_json(path, split)
    if format == "chat_json":
        return _json_list(_split_file(path, split, ".json"))
    if format == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(_split_file(path, split, ".parquet")).to_pylist()
    raise TaskDataError(f"unknown dataset format {format!r}", hint=f"use one of: {', '.join(FORMATS)}")


def _instruct_json(path: Path, split: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TaskDataError(f"{path}: dataset file not found",
                            hint="pass an absolute path to an instruct_json file") from None
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, dict) or split not in data:
        have = ", ".join(data) if isinstance(data, dict) else type(data).__name__
        raise TaskDataError(f"{path}: no split {split!r} (has: {have})",
                            hint='instruct_json is {"train": [...], "validation": [...], "test": [...]}')
    return _records(data[split], f"{path}[{split}]")


def _split_file(folder: Path, split: str, suffix: str) -> Path:
    file = folder / f"{split}{suffix}"
    if not file.is_file():
        raise TaskDataError(f"{file}: split file not found",
                            hint=f"this format is a folder of <split>{suffix} files")
    return file


def _json_list(path: Path) -> list[dict[str, Any]]:
    try:
        return _records(json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}:{e.colno}: not valid JSON ({e.msg})") from None


def _records(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise TaskDataError(f"{where}: expected a list of objects")
    return value


def to_chat(record: dict[str, Any], *, template: str | None, system: str | None,
            where: str) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, target) for one record.

    input/output records go through build_messages (template and system applied, as in training).
    messages records are already chats: the last assistant turn is the target, the turns before it
    the prompt; `system` is prepended only when the chat has no system turn of its own.
    """
    if "messages" in record and record["messages"] is not None:
        messages = [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise TaskDataError(f"{where}: chat has no assistant turn to use as the target")
        prompt, target = messages[:last], messages[last]["content"]
        if system and not any(m["role"] == "system" for m in prompt):
            prompt = [{"role": "system", "content": system}, *prompt]
        return prompt, target
    if "input" not in record or "output" not in record:
        raise TaskDataError(f"{where}: record needs 'input' and 'output' (or 'messages')")
    return build_messages(record["input"], template=template, system=system), str(record["output"])


def load_samples(data: str | Path, *, format: str = "instruct_json", split: str = "test",
                 template: str | None = None, system: str | None = None,
                 limit: int | None = None) -> list:
    """inspect Samples for one split; sample ids are the 0-based record positions."""
    from inspect_ai.dataset import Sample
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    classes = {"system": ChatMessageSystem, "user": ChatMessageUser, "assistant": ChatMessageAssistant}
    records = read_split(data, format, split)
    if limit is not None:
        records = records[:limit]
    samples = []
    for i, record in enumerate(records):
        prompt, target = to_chat(record, template=template, system=system, where=f"{data}[{split}][{i}]")
        try:
            chat = [classes[m["role"]](content=m["content"]) for m in prompt]
        except KeyError as e:
            raise TaskDataError(f"{data}[{split}][{i}]: unsupported role {e.args[0]!r}") from None
        samples.append(Sample(id=i, input=chat, target=target))
    if not samples:
        raise TaskDataError(f"{data}: split {split!r} is empty")
    return samples
