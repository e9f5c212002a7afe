"""Dataset splits → inspect Samples whose prompt is built exactly as in training.

Splits are read by the one dataset reader, cruijff.data.formats (formats, layouts, roles), so
evaluation reads the rows training and the plan-time check read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cruijff.data.formats import MANIFEST_FORMATS as FORMATS  # noqa: F401  (re-exported by cruijff.tasks)
from cruijff.data.formats import TEXT, DataFormatError
from cruijff.data.formats import read_split as _read
from cruijff.prompting import row_kind, row_prompt


class TaskDataError(DataFormatError):
    """An evaluation dataset cannot be used (beyond its format: empty split, no target)."""


def read_split(data: str | Path, format: str, split: str) -> list[dict[str, Any]]:
    """The raw records of one split, through the one dataset reader (the rows training reads)."""
    return _read(data, format, split)


def to_chat(record: dict[str, Any], *, template: str | None, system: str | None,
            where: str) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, target) for one record, from `cruijff.prompting.row_prompt`, the builder
    training uses: the target is the answer training learns (an instruct output, a chat's last
    assistant turn), the prompt exactly the messages training puts before it."""
    if row_kind(record, where) == TEXT:
        raise TaskDataError(f"{where}: a text row has no prompt and target to evaluate",
                            hint="evaluate on instruct (input/output) or chat (messages) rows")
    return row_prompt(record, template=template, system=system, where=where)


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
