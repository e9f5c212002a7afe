"""`prompted_dataset`: the one torchtune dataset component cruijff renders, for every format.

Every row becomes (prompt messages, answer) through `cruijff.prompting.row_prompt`, the builder
evaluation uses too, and every chat is tokenized by `cruijff.train.tokenizer.chat_sample` with the
model's own Hugging Face tokenizer and chat template, the way inspect-ai's hf provider tokenizes
the evaluation prompt: the prompt ids trained on are the ids evaluated on (docs/parity.md).
With `style: text_completion` (base models) an instruct row's prompt is the plain templated text
(`row_prompt`'s one user turn, `completion_prompt`), tokenized by `completion_sample` as inspect tokenizes it
under cruijff's text-completion chat template: no chat template on either side.
Samples are tokenized lazily, like torchtune's own SFTDataset, and carry `tokens` and `labels`
(the loss ignores masked positions), so any torchtune recipe and collator accept them.
"""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from cruijff.data.formats import CHAT as CHAT_ROWS
from cruijff.data.formats import INSTRUCT, TEXT
from cruijff.data.formats import MANIFEST_FORMATS as FORMATS
from cruijff.prompting import CHAT, STYLES, TEXT_COMPLETION, row_kind, row_prompt
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
    where = f"{path} [{split}]"
    kind = row_kind(rows[0], f"{where} row 0")
    if style == TEXT_COMPLETION and kind == CHAT_ROWS:
        raise DatasetError(f"{where}: text_completion prompts are built from instruct rows (input/output), "
                           "not from chat rows", hint="use prompt.style: chat for chat data")
    if style == TEXT_COMPLETION and system and kind == INSTRUCT:
        raise DatasetError(f"{where}: a system prompt has no place in a text_completion prompt",
                           hint="put the instruction into prompt.template instead")
    prompts = _Prompts(kind, template, system, where)
    for i, row in enumerate(rows):  # fail at setup, with the row number, not mid-epoch
        prompts(row, i)
    if kind == TEXT:
        ds = _TokenizedRows(rows, _TextTransform(tokenizer, prompts, max_seq_len), max_seq_len=None)
    elif style == TEXT_COMPLETION:
        ds = _TokenizedRows(rows, _CompletionTransform(tokenizer, prompts, train_on_input),
                            max_seq_len=max_seq_len)
    else:
        ds = _TokenizedRows(rows, _ChatTransform(tokenizer, prompts, train_on_input, where),
                            max_seq_len=max_seq_len)
    if not packed:
        return ds
    from torchtune.datasets import PackedDataset

    limit = max_seq_len or getattr(tokenizer, "max_seq_len", None)
    if not limit:
        raise DatasetError(f"{where}: packing needs max_seq_len", hint="set the tokenizer's max_seq_len")
    return PackedDataset(ds, max_seq_len=limit, padding_idx=tokenizer.pad_id,
                         split_across_pack=(kind == "text"))


class _Prompts:
    """One row -> (prompt messages, answer) through `cruijff.prompting.row_prompt`, the builder
    evaluation, `data stats` and the estimate use; every row must have the first row's shape."""

    def __init__(self, kind: str, template: str | None, system: str | None, where: str):
        self.kind, self._template, self._system, self._where = kind, template, system, where

    def __call__(self, row: dict, index: int | None = None) -> tuple[list[dict[str, str]], str]:
        where = self._where if index is None else f"{self._where} row {index}"
        return row_prompt(row, template=self._template, system=self._system, kind=self.kind, where=where)


class _ChatTransform:
    """One row → prompt + answer → tokens and labels, through the eval-identical `chat_sample`."""

    def __init__(self, tokenizer: HFTokenizer, prompts: _Prompts, train_on_input: bool, where: str):
        self._tok, self._prompts = tokenizer, prompts
        self._train_on_input, self._where = train_on_input, where

    def __call__(self, row: dict) -> dict:
        prompt, answer = self._prompts(row)
        return chat_sample(self._tok, [*prompt, {"role": "assistant", "content": answer}],
                           train_on_input=self._train_on_input, where=self._where)


class _CompletionTransform:
    """One instruct row → plain prompt text + answer → tokens and labels (`completion_sample`)."""

    def __init__(self, tokenizer: HFTokenizer, prompts: _Prompts, train_on_input: bool):
        self._tok, self._prompts, self._train_on_input = tokenizer, prompts, train_on_input

    def __call__(self, row: dict) -> dict:
        # the one user turn is the templated text (`completion_prompt`); no system (refused above)
        (user,), answer = self._prompts(row)
        return completion_sample(self._tok, user["content"], answer, train_on_input=self._train_on_input)


class _TextTransform:
    """torchtune's text-completion sample: BOS + text + EOS, loss on every token."""

    def __init__(self, tokenizer, prompts: _Prompts, max_seq_len: int | None):
        self._tok, self._prompts = tokenizer, prompts
        tok_limit = getattr(tokenizer, "max_seq_len", None)
        # torchtune's TextCompletionDataset keeps max_seq_len - 1 tokens; an explicit limit is exact.
        self._limit = max_seq_len or (tok_limit - 1 if tok_limit else None)

    def __call__(self, row: dict) -> dict:
        _, text = self._prompts(row)  # a text row is all answer
        tokens = self._tok.encode(text=text, add_bos=True, add_eos=True)
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
