"""The one place a prompt is built, so training and evaluation can never disagree on it.

The manifest's `prompt: {system, template}` is passed unchanged to the training dataset
component and to the evaluation task. Every dataset row, whatever its shape (instruct
input/output, chat messages, text), becomes (prompt messages, answer) in `row_prompt` only:
training (cruijff.train.datasets), evaluation (cruijff.tasks), `cruijff data stats` and the plan's
cost estimate (cruijff.compiler.estimate) all call it. `prompt.style` says how that prompt reaches
the model: `chat` (the model's chat template) or `text_completion` (base models: the templated
text itself, no chat template, on both sides; docs/parity.md).
Imported at plan time: the stdlib and cruijff.data.formats (stdlib-only) alone.
"""

from __future__ import annotations

from typing import Any

from cruijff.data.formats import CHAT as CHAT_ROWS
from cruijff.data.formats import INSTRUCT, ROLES, TEXT, DataFormatError

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


class PromptError(DataFormatError):
    """A dataset row cannot be made into a prompt and an answer."""


# the keys each row shape must fill (never null)
ROW_KEYS = {INSTRUCT: ("input", "output"), CHAT_ROWS: ("messages",), TEXT: ("text",)}


def row_kind(row: dict[str, Any], where: str = "row") -> str:
    """instruct | chat | text: the shape of one row, from the keys it fills (messages first)."""
    if not isinstance(row, dict):
        raise PromptError(f"{where} is not an object")
    if row.get("messages") is not None:
        return CHAT_ROWS
    if row.get("input") is not None or row.get("output") is not None:
        return INSTRUCT
    if row.get("text") is not None:
        return TEXT
    raise PromptError(f"{where} has none of input/output, messages or text",
                      hint=f"its keys are {sorted(row)}")


def row_prompt(row: dict[str, Any], *, template: str | None = None, system: str | None = None,
               kind: str | None = None, where: str = "row") -> tuple[list[dict[str, str]], str]:
    """(prompt messages, answer) of one dataset row: the one prompt builder.

    instruct: `build_messages` (optional system, the templated input); the answer is the output.
    chat: the turns before the last (assistant) turn, which is the answer; `system` is prepended
    when the chat has no system turn of its own; a template does not apply (the chat holds its
    user turns). text: no prompt; the answer is the text; neither template nor system apply.
    `kind` (default: `row_kind`) says which shape every row of a dataset must have.
    The full training chat is `prompt + [{"role": "assistant", "content": answer}]`.
    """
    kind = kind or row_kind(row, where)
    missing = [k for k in ROW_KEYS[kind] if not isinstance(row, dict) or row.get(k) is None]
    if missing:
        raise PromptError(f"{where} lacks {', '.join(missing)}", hint=f"every row needs {', '.join(ROW_KEYS[kind])}")
    if kind == INSTRUCT:
        return build_messages(row["input"], template=template, system=system), str(row["output"])
    if kind == TEXT:
        if template or system:
            raise PromptError(f"{where}: template/system do not apply to the text format",
                              hint="remove the prompt from this dataset, or use instruct rows")
        return [], str(row["text"])
    if template:
        raise PromptError(f"{where}: a prompt template applies to instruct rows (input/output) only",
                          hint="chat rows already hold their user turns; drop the template")
    messages = _chat_turns(row, where)
    _check_chat(messages, where)
    return _with_system(messages[:-1], system), messages[-1]["content"]


def inference_prompt(row: dict[str, Any], *, template: str | None = None, system: str | None = None,
                     where: str = "row") -> list[dict[str, str]]:
    """The prompt messages of a row whose answer may be missing (logits and embeddings of
    unlabelled rows, cruijff.llm): an instruct row needs only its input; a chat row ends before
    its trailing assistant turn(s). Where the answer is there, this is `row_prompt`'s prompt."""
    if not isinstance(row, dict) or (row.get("messages") is None and row.get("input") is None):
        raise PromptError(f"{where} has neither input nor messages",
                          hint="instruct rows need `input`, chat rows `messages`")
    if row.get("messages") is None:
        return build_messages(row["input"], template=template, system=system)
    if template:
        raise PromptError(f"{where}: a prompt template applies to instruct rows (input/output) only",
                          hint="chat rows already hold their user turns; drop the template")
    messages = _chat_turns(row, where)
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not messages:
        raise PromptError(f"{where}: a chat row has no message before its answer")
    _check_roles(messages, where)
    return _with_system(messages, system)


def _chat_turns(row: dict[str, Any], where: str) -> list[dict[str, str]]:
    try:
        return [{"role": m["role"], "content": str(m["content"])} for m in row["messages"]]
    except (TypeError, KeyError):
        raise PromptError(f"{where}: every message needs a role and a content") from None


def _with_system(prompt: list[dict[str, str]], system: str | None) -> list[dict[str, str]]:
    """`system` comes first, unless the chat has a system turn of its own."""
    if system and (not prompt or prompt[0]["role"] != "system"):
        return [{"role": "system", "content": system}, *prompt]
    return prompt


def _check_roles(messages: list[dict[str, str]], where: str) -> None:
    bad = [m["role"] for m in messages if m["role"] not in ROLES]
    if bad:
        raise PromptError(f"{where}: unknown role '{bad[0]}'", hint=f"roles are {', '.join(ROLES)}")
    if any(m["role"] == "system" for m in messages[1:]):
        raise PromptError(f"{where}: a system turn can only come first")


def _check_chat(messages: list[dict[str, str]], where: str) -> None:
    """A chat row is a prompt followed by the one answer: known roles, system first, an answer last."""
    _check_roles(messages, where)
    if not messages or messages[-1]["role"] != "assistant":
        raise PromptError(f"{where}: the conversation does not end with an assistant answer",
                          hint="a row needs the answer to learn and to score")
    if len(messages) < 2 or messages[-2]["role"] == "assistant":
        raise PromptError(f"{where}: the answer has no prompt before it",
                          hint="put a user turn before the last assistant turn")
