"""Dataset splits → inspect Samples whose prompt is built exactly as in training.

Splits are read by the one dataset reader, cruijff.data.formats (formats, layouts, roles), so
evaluation reads the rows training and the plan-time check read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cruijff.data.formats import MANIFEST_FORMATS as FORMATS  # noqa: F401  (re-exported by cruijff.tasks)
from cruijff.data.formats import DataFormatError
from cruijff.data.formats import read_split as _read
from cruijff.prompting import build_messages


class TaskDataError(DataFormatError):
    """An evaluation dataset cannot be used (beyond its format: empty split, no target)."""


def read_split(data: str | Path, format: str, split: str) -> list[dict[str, Any]]:
    """The raw records of one split, through the one dataset reader (the rows training reads)."""
    return _read(data, format, split)


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
