"""Dataset rows -> prompt text, through the same builder training and evaluation use.

Instruct rows (`input`, optional `output`) and chat rows (`messages`, cut before their final
assistant turn(s)) go through `cruijff.prompting.inference_prompt`, so the model sees exactly the
prompt it was trained and evaluated on. Text rows (`text`) are treated as an input.
The preprompt is prepended to the content of the last user turn (after the template is applied).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable

from cruijff.errors import UsageError
from cruijff.prompting import build_messages, inference_prompt


@dataclass(frozen=True)
class PromptSettings:
    chat_template: bool = True
    system: str | None = None
    preprompt: str | None = None
    template: str | None = None

    def as_attrs(self) -> dict[str, Any]:
        return asdict(self)


def row_id(row: dict, index: int) -> str:
    """A row's own `id` when it has one, else its position in the split."""
    value = row.get("id") if isinstance(row, dict) else None
    return str(index) if value is None else str(value)


def row_messages(row: dict, settings: PromptSettings = PromptSettings()) -> list[dict[str, str]]:
    """The chat messages that end right before the answer (cruijff.prompting.inference_prompt;
    a text row is used as an input)."""
    if isinstance(row, dict) and row.get("messages") is None and row.get("input") is None \
            and row.get("text") is not None:
        messages = build_messages(row["text"], template=settings.template, system=settings.system)
    else:
        messages = inference_prompt(row, template=settings.template, system=settings.system)
    if settings.preprompt:
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if users:
            m = messages[users[-1]]
            m["content"] = settings.preprompt + m["content"]
    return messages


def messages_text(tokenizer, messages: list[dict[str, str]], chat_template: bool = True) -> str:
    """With the chat template: the generation prompt. Without: the contents joined by blank lines."""
    if not chat_template:
        return "\n\n".join(m["content"] for m in messages)
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError("the tokenizer has no chat template",
                         hint="use --no-chat-template to feed the plain prompt text")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_texts(tokenizer, rows: Iterable[dict], settings: PromptSettings = PromptSettings()) -> list[str]:
    return [messages_text(tokenizer, row_messages(r, settings), settings.chat_template) for r in rows]


def plain_prompts(tokenizer, prompts: Iterable[str], settings: PromptSettings = PromptSettings()) -> list[str]:
    """Free-text prompts (not dataset rows) treated as inputs."""
    return prompt_texts(tokenizer, ({"input": p} for p in prompts), settings)
