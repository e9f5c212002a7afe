"""The training tokenizer: the model's own Hugging Face tokenizer and chat template.

inspect-ai's hf provider builds an evaluation prompt as
`tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)` and then
tokenizes that string with the model config's `tokenizer_call_args` (cruijff writes
`cruijff.prompting.EVAL_TOKENIZER_CALL_ARGS`). `chat_sample` builds a training sample from the
same template and the same call, so the ids a model is trained on as the prompt are, token for
token, the ids it is fed at evaluation (docs/parity.md). `hf_tokenizer` is the torchtune
`tokenizer:` component: it exposes what torchtune recipes use (pad_id, eos_id, max_seq_len,
encode, decode).
"""

from __future__ import annotations

from typing import Any

from cruijff.prompting import EVAL_TOKENIZER_CALL_ARGS, TEXT_COMPLETION, tokenizer_call_args
from cruijff.train.rows import DatasetError

CROSS_ENTROPY_IGNORE_IDX = -100  # torchtune.data.CROSS_ENTROPY_IGNORE_IDX


class HFTokenizer:
    """A transformers tokenizer with the attributes torchtune recipes and collators read."""

    def __init__(self, hf: Any, max_seq_len: int | None = None):
        self.hf = hf
        self.max_seq_len = max_seq_len
        self.bos_id = hf.bos_token_id
        self.eos_id = hf.eos_token_id
        # inspect pads with eos at evaluation; padding never reaches the loss (labels are masked).
        pad = hf.pad_token_id if hf.pad_token_id is not None else self.eos_id
        self.pad_id = pad if pad is not None else 0

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    def encode(self, text: str, add_bos: bool = True, add_eos: bool = True) -> list[int]:
        """Plain text (the text format): add_bos adds the tokenizer's own special tokens (BOS
        where the model has one, as its post-processor writes them), add_eos the EOS."""
        ids = list(self.hf(text, add_special_tokens=add_bos)["input_ids"])
        if add_eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def decode(self, token_ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(list(token_ids), skip_special_tokens=skip_special_tokens)

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        """The chat as text, exactly as inspect's hf provider renders it (same template call;
        without a chat template, inspect's own fallback: one `role: content` line per turn)."""
        if self.hf.chat_template is None:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return self.hf.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

    def text_ids(self, text: str) -> list[int]:
        """Tokenize rendered chat text with the call inspect makes at evaluation (no added tokens)."""
        return list(self.hf(text, **EVAL_TOKENIZER_CALL_ARGS)["input_ids"])


def hf_tokenizer(path: str, max_seq_len: int | None = None) -> HFTokenizer:
    """torchtune `tokenizer:` component: the tokenizer in model folder `path` (AutoTokenizer)."""
    from transformers import AutoTokenizer

    return HFTokenizer(AutoTokenizer.from_pretrained(path), max_seq_len=max_seq_len)


def chat_sample(tok: HFTokenizer, messages: list[dict[str, str]], *, train_on_input: bool = False,
                where: str = "row") -> dict[str, list[int]]:
    """tokens + labels for a chat whose last turn is the answer to learn.

    prompt = the chat before the last answer, rendered with the generation prompt (what inspect
    feeds the model); the rest of the full chat (answer + the template's end of turn) is trained,
    plus EOS when the template writes none, so the model learns to stop. Earlier assistant turns
    inside the prompt are trained too, located by character offsets in the one prompt string, so
    the prompt is tokenized once, exactly as at evaluation.
    """
    prompt_text = tok.render(messages[:-1], add_generation_prompt=True)
    full_text = tok.render(messages, add_generation_prompt=False)
    if not full_text.startswith(prompt_text):
        raise DatasetError(
            f"{where}: the chat template does not render the prompt as a prefix of the whole chat, "
            "so the prompt the model is trained on would differ from the one it is evaluated on",
            hint="use a chat template whose generation prompt is the start of the assistant turn "
                 "(see docs/parity.md)")
    prompt = tok.text_ids(prompt_text)
    answer = tok.text_ids(full_text[len(prompt_text):])
    if tok.eos_id is not None and tok.eos_id not in answer:
        answer.append(tok.eos_id)
    if train_on_input:
        labels = list(prompt)
    else:
        labels = [CROSS_ENTROPY_IGNORE_IDX] * len(prompt)
        spans = _earlier_answers(tok, messages, prompt_text, where)
        if spans:
            _unmask(tok, prompt_text, prompt, labels, spans)
    tokens, labels = prompt + answer, labels + list(answer)
    if tok.max_seq_len is not None and len(tokens) > tok.max_seq_len:
        tokens, labels = tokens[: tok.max_seq_len], labels[: tok.max_seq_len]
    return {"tokens": tokens, "labels": labels}


def completion_sample(tok: HFTokenizer, prompt_text: str, answer: str, *,
                      train_on_input: bool = False) -> dict[str, list[int]]:
    """tokens + labels for a text_completion row: the prompt text tokenized with the call inspect
    makes at evaluation (`tokenizer_call_args("text_completion")`: the tokenizer's own BOS), then
    the answer (no special tokens) and EOS, trained so the model learns to stop."""
    prompt = list(tok.hf(prompt_text, **tokenizer_call_args(TEXT_COMPLETION))["input_ids"])
    rest = list(tok.hf(answer, add_special_tokens=False)["input_ids"])
    if tok.eos_id is not None:
        rest.append(tok.eos_id)
    labels = list(prompt) if train_on_input else [CROSS_ENTROPY_IGNORE_IDX] * len(prompt)
    tokens, labels = prompt + rest, labels + rest
    if tok.max_seq_len is not None and len(tokens) > tok.max_seq_len:
        tokens, labels = tokens[: tok.max_seq_len], labels[: tok.max_seq_len]
    return {"tokens": tokens, "labels": labels}


def _earlier_answers(tok: HFTokenizer, messages, prompt_text: str, where: str) -> list[tuple[int, int]]:
    """Character spans of the assistant turns before the last one (answer + end of turn)."""
    spans = []
    for k, m in enumerate(messages[:-1]):
        if m["role"] != "assistant":
            continue
        before = tok.render(messages[:k], add_generation_prompt=True)
        after = tok.render(messages[: k + 1], add_generation_prompt=False)
        if not (after.startswith(before) and prompt_text.startswith(after)):
            raise DatasetError(f"{where}: the chat template renders turn {k} differently inside a longer chat",
                               hint="train this chat as one row per answer (see docs/parity.md)")
        spans.append((len(before), len(after)))
    return spans


def _unmask(tok: HFTokenizer, text: str, ids: list[int], labels: list[int], spans) -> None:
    """Train the prompt tokens that lie wholly inside one of `spans` (character ranges)."""
    enc = tok.hf(text, return_offsets_mapping=True, **EVAL_TOKENIZER_CALL_ARGS)
    assert list(enc["input_ids"]) == ids  # the same call as text_ids
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        if b > a and any(start <= a and b <= end for start, end in spans):
            labels[i] = ids[i]
