"""`prompted_dataset`: the one torchtune dataset component cruijff renders, for every format.

Instruct rows become chat messages through `cruijff.prompting.build_messages`, the builder
evaluation uses too, and every chat is tokenized by `cruijff.train.tokenizer.chat_sample` with the
model's own Hugging Face tokenizer and chat template, the way inspect-ai's hf provider tokenizes
the evaluation prompt: the prompt ids trained on are the ids evaluated on (docs/parity.md).
With `style: text_completion` (base models) an instruct row's prompt is the plain templated text
(`cruijff.prompting.completion_prompt`), tokenized by `completion_sample` as inspect tokenizes it
under cruijff's text-completion chat template: no chat template on either side.
Samples are tokenized lazily, like torchtune's own SFTDataset, and carry `tokens` and `labels`
(the loss ignores masked positions), so any torchtune recipe and collator accept them.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from cruijff.data.formats import MANIFEST_FORMATS as FORMATS
from cruijff.data.formats import ROLES
from cruijff.prompting import CHAT, STYLES, TEXT_COMPLETION, build_messages, completion_prompt
from cruijff.train.rows import DatasetError, load_rows
from cruijff.train.tokenizer import HFTokenizer, chat_sample, completion_sample



def prompted_dataset(
    tokenizer,
    *,
    path: str,
    format: str,
    split: str,
    template: str | None = None,
    system: str | None = None,
    train_on_input: bool = False,
    packed: bool = False,
    max_seq_len: int | None = None,
    style: str = CHAT,
):
    """Build the dataset of one split; `packed` packs samples to `max_seq_len` (or the tokenizer's)."""
    if format not in FORMATS:
        raise DatasetError(f"unknown dataset format '{format}'", hint=f"use one of {', '.join(FORMATS)}")
    if style not in STYLES:
        raise DatasetError(f"unknown prompt style '{style}'", hint=f"use one of {', '.join(STYLES)}")
    if not isinstance(tokenizer, HFTokenizer):
        raise DatasetError(f"prompted_dataset needs cruijff.train.tokenizer.hf_tokenizer, got {type(tokenizer).__name__}",
                           hint="re-run `cruijff plan`: configs now train with the model's own tokenizer")
    rows = load_rows(path, format, split)
    if not rows:
        raise DatasetError(f"split '{split}' of dataset {path} has no rows")
    kind = _row_kind(format, rows[0], path)
    where = f"{path} [{split}]"
    if kind == "text":
        if template or system:
            raise DatasetError(f"{where}: template/system do not apply to the text format",
                               hint="remove the prompt from this dataset, or use instruct rows")
        _check_rows(rows, ("text",), where)
        ds = _TokenizedRows(rows, _TextTransform(tokenizer, max_seq_len), max_seq_len=None)
    elif style == TEXT_COMPLETION:
        if kind != "instruct":
            raise DatasetError(f"{where}: text_completion prompts are built from instruct rows (input/output), "
                               "not from chat rows", hint="use prompt.style: chat for chat data")
        if system:
            raise DatasetError(f"{where}: a system prompt has no place in a text_completion prompt",
                               hint="put the instruction into prompt.template instead")
        _check_rows(rows, ("input", "output"), where)
        ds = _TokenizedRows(rows, _CompletionTransform(tokenizer, template, train_on_input),
                            max_seq_len=max_seq_len)
    else:
        to_messages = _messages_maker(kind, template, system, where)
        _check_rows(rows, ("messages",) if kind == "chat" else ("input", "output"), where)
        for i, row in enumerate(rows):  # fail at setup, with the row number, not mid-epoch
            _validate(to_messages(row), f"{where} row {i}")
        ds = _TokenizedRows(rows, _ChatTransform(tokenizer, to_messages, train_on_input, where),
                            max_seq_len=max_seq_len)
    if not packed:
        return ds
    from torchtune.datasets import PackedDataset

    limit = max_seq_len or getattr(tokenizer, "max_seq_len", None)
    if not limit:
        raise DatasetError(f"{where}: packing needs max_seq_len", hint="set the tokenizer's max_seq_len")
    return PackedDataset(ds, max_seq_len=limit, padding_idx=tokenizer.pad_id,
                         split_across_pack=(kind == "text"))


def _row_kind(format: str, first: dict, path: str) -> str:
    if format == "instruct_json":
        return "instruct"
    if format == "chat_json":
        return "chat"
    if format == "text":
        return "text"
    if "messages" in first:  # parquet holds either shape
        return "chat"
    if "input" in first and "output" in first:
        return "instruct"
    raise DatasetError(f"parquet dataset {path} needs columns input/output or messages",
                       hint=f"its columns are {sorted(first)}")


def _check_rows(rows: list[dict], keys: tuple[str, ...], where: str) -> None:
    for i, row in enumerate(rows):
        missing = [k for k in keys if row.get(k) is None]
        if missing:
            raise DatasetError(f"{where} row {i} lacks {', '.join(missing)}",
                               hint=f"every row needs {', '.join(keys)}")


def _messages_maker(kind: str, template, system, where: str) -> Callable[[dict], list[dict[str, str]]]:
    if kind == "instruct":
        return lambda row: build_messages(row["input"], template=template, system=system,
                                          output=str(row["output"]))
    if template:
        raise DatasetError(f"{where}: a prompt template applies to instruct rows (input/output) only",
                           hint="chat rows already hold their user turns; drop the template")

    def chat(row: dict) -> list[dict[str, str]]:
        messages = [{"role": m["role"], "content": str(m["content"])} for m in row["messages"]]
        if system and not (messages and messages[0]["role"] == "system"):
            messages.insert(0, {"role": "system", "content": system})
        return messages

    return chat


def _validate(messages: list[dict[str, str]], where: str) -> None:
    bad = [m["role"] for m in messages if m["role"] not in ROLES]
    if bad:
        raise DatasetError(f"{where}: unknown role '{bad[0]}'", hint=f"roles are {', '.join(ROLES)}")
    if any(m["role"] == "system" for m in messages[1:]):
        raise DatasetError(f"{where}: a system turn can only come first")
    if not messages or messages[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: the conversation does not end with an assistant answer",
                           hint="a training row needs the answer to learn")
    if len(messages) < 2 or messages[-2]["role"] == "assistant":
        raise DatasetError(f"{where}: the answer has no prompt before it",
                           hint="put a user turn before the last assistant turn")


class _ChatTransform:
    """One row → messages → tokens and labels, through the eval-identical `chat_sample`."""

    def __init__(self, tokenizer: HFTokenizer, to_messages: Callable, train_on_input: bool, where: str):
        self._tok, self._to_messages = tokenizer, to_messages
        self._train_on_input, self._where = train_on_input, where

    def __call__(self, row: dict) -> dict:
        return chat_sample(self._tok, self._to_messages(row), train_on_input=self._train_on_input,
                           where=self._where)


class _CompletionTransform:
    """One instruct row → plain prompt text + answer → tokens and labels (`completion_sample`)."""

    def __init__(self, tokenizer: HFTokenizer, template: str | None, train_on_input: bool):
        self._tok, self._template, self._train_on_input = tokenizer, template, train_on_input

    def __call__(self, row: dict) -> dict:
        return completion_sample(self._tok, completion_prompt(row["input"], template=self._template),
                                 str(row["output"]), train_on_input=self._train_on_input)


class _TextTransform:
    """torchtune's text-completion sample: BOS + text + EOS, loss on every token."""

    def __init__(self, tokenizer, max_seq_len: int | None):
        self._tok = tokenizer
        tok_limit = getattr(tokenizer, "max_seq_len", None)
        # torchtune's TextCompletionDataset keeps max_seq_len - 1 tokens; an explicit limit is exact.
        self._limit = max_seq_len or (tok_limit - 1 if tok_limit else None)

    def __call__(self, row: dict) -> dict:
        tokens = self._tok.encode(text=str(row["text"]), add_bos=True, add_eos=True)
        if self._limit is not None:
            tokens = tokens[: self._limit]
        return {"tokens": tokens, "labels": list(tokens)}


class _TokenizedRows(Dataset):
    """A map-style dataset that tokenizes one row per access."""

    def __init__(self, rows: list[dict], transform: Callable[[dict], dict[str, Any]],
                 max_seq_len: int | None):
        self._rows = rows
        self._transform = transform
        self._max_seq_len = max_seq_len

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self._transform(dict(self._rows[index]))
        if self._max_seq_len is not None:
            for key in ("tokens", "labels", "mask"):
                if key in sample:
                    sample[key] = sample[key][: self._max_seq_len]
        return sample
