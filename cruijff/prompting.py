"""The one place a prompt is built, so training and evaluation can never disagree on it.

The manifest's `prompt: {system, template}` is passed unchanged to the training dataset
component and to the evaluation task; both call `build_messages`.
"""

from __future__ import annotations

from typing import Any

# How a rendered prompt is tokenized, at evaluation (inspect's hf `tokenizer_call_args`, written
# into model_config.yaml) and in training (cruijff.train.tokenizer): the chat template writes
# every special token itself (BOS included, where the model has one), so the call adds none.
EVAL_TOKENIZER_CALL_ARGS = {"add_special_tokens": False}


def render_input(template: str | None, value: Any) -> str:
    """Put one example's input into the template; `{input}` is the only placeholder."""
    text = value if isinstance(value, str) else str(value)
    if not template:
        return text
    # str.replace, not str.format: user templates may contain other braces (JSON examples ...).
    return template.replace("{input}", text)


def build_messages(input_value: Any, *, template: str | None = None, system: str | None = None,
                   output: str | None = None) -> list[dict[str, str]]:
    """Chat messages for one example: optional system, the templated user turn, optional answer."""
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": render_input(template, input_value)})
    if output is not None:
        messages.append({"role": "assistant", "content": output})
    return messages
