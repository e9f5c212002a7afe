"""The one place a prompt is built, so training and evaluation can never disagree on it.

The manifest's `prompt: {system, template}` is passed unchanged to the training dataset
component and to the evaluation task; both call `build_messages`. `prompt.style` says how that
prompt reaches the model: `chat` (the model's chat template) or `text_completion` (base models:
the templated text itself, no chat template, on both sides; docs/parity.md).
"""

from __future__ import annotations

from typing import Any

# How a rendered prompt is tokenized, at evaluation (inspect's hf `tokenizer_call_args`, written
# into model_config.yaml) and in training (cruijff.train.tokenizer): the chat template writes
# every special token itself (BOS included, where the model has one), so the call adds none.
EVAL_TOKENIZER_CALL_ARGS = {"add_special_tokens": False}

CHAT, TEXT_COMPLETION = "chat", "text_completion"
STYLES = (CHAT, TEXT_COMPLETION)

# text_completion: the prompt is the templated text, tokenized as plain text with the tokenizer's
# own special tokens (BOS where its post-processor adds one, as for a base model's pre-training
# text and the `text` dataset format). Training calls the tokenizer with these same arguments.
TEXT_TOKENIZER_CALL_ARGS = {"add_special_tokens": True}

# text_completion at evaluation: inspect's hf provider always renders a chat template (the
# tokenizer's own, or its `role: content` fallback); this one, passed as its `chat_template` model
# argument, renders the one user turn's text and nothing else, so it is exactly `completion_prompt`.
TEXT_COMPLETION_CHAT_TEMPLATE = (
    "{%- if messages | length != 1 or messages[0]['role'] != 'user' -%}"
    "{{ raise_exception('text_completion: a prompt is one user turn (no system prompt, no chat rows)') }}"
    "{%- endif -%}"
    "{{ messages[0]['content'] }}"
)


def tokenizer_call_args(style: str = CHAT) -> dict[str, bool]:
    """How the rendered prompt text is tokenized, at evaluation and in training."""
    return dict(TEXT_TOKENIZER_CALL_ARGS if style == TEXT_COMPLETION else EVAL_TOKENIZER_CALL_ARGS)


def render_input(template: str | None, value: Any) -> str:
    """Put one example's input into the template; `{input}` is the only placeholder."""
    text = value if isinstance(value, str) else str(value)
    if not template:
        return text
    # str.replace, not str.format: user templates may contain other braces (JSON examples ...).
    return template.replace("{input}", text)


def completion_prompt(input_value: Any, *, template: str | None = None) -> str:
    """text_completion: the whole prompt, the templated input; the answer follows it directly (end
    the template with the separator the answer needs, e.g. "Answer: " or a newline)."""
    return render_input(template, input_value)


def build_messages(input_value: Any, *, template: str | None = None, system: str | None = None,
                   output: str | None = None) -> list[dict[str, str]]:
    """Chat messages for one example: optional system, the templated user turn, optional answer."""
    messages = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": completion_prompt(input_value, template=template)})
    if output is not None:
        messages.append({"role": "assistant", "content": output})
    return messages
