"""Batched forward passes: last-position logits, greedy generation, hidden states.

Batches are left-padded and position ids follow the attention mask, so a padded row gives the
same numbers as the same prompt run alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from cruijff.errors import UsageError

Progress = Callable[[int], None]  # called with the number of rows just finished


def batched(items: Sequence, size: int) -> Iterable[Sequence]:
    if size < 1:
        raise UsageError(f"batch size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def model_device(model) -> Any:
    return next(model.parameters()).device


def encode(tokenizer, texts: Sequence[str], *, add_special_tokens: bool, padding_side: str = "left",
           device: Any = "cpu") -> dict[str, Any]:
    """input_ids, attention_mask and mask-derived position_ids for one batch."""
    enc = tokenizer(list(texts), padding=True, padding_side=padding_side, return_tensors="pt",
                    add_special_tokens=add_special_tokens)
    mask = enc["attention_mask"]
    if not bool(mask.sum(dim=1).gt(0).all()):
        raise UsageError("a prompt tokenizes to nothing", hint="check the dataset for empty inputs")
    position_ids = (mask.long().cumsum(dim=1) - 1).clamp(min=0)
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": mask.to(device),
            "position_ids": position_ids.to(device)}


def forward(model, batch: dict[str, Any], *, hidden_states: bool = False):
    import torch

    with torch.inference_mode():
        return model(**batch, output_hidden_states=hidden_states, use_cache=False)


def answer_token_ids(tokenizer, answers: Sequence[str | int]) -> list[int]:
    """One token id per answer: an int is a token id; a string is its first token (warned if more)."""
    ids: list[int] = []
    for a in answers:
        if isinstance(a, int):
            tid = a
        else:
            toks = tokenizer.encode(a, add_special_tokens=False)
            if not toks:
                raise UsageError(f"answer {a!r} tokenizes to nothing")
            if len(toks) > 1:
                warnings.warn(f"answer {a!r} is {len(toks)} tokens; using its first token "
                              f"{tokenizer.convert_ids_to_tokens(toks[0])!r}", stacklevel=2)
            tid = toks[0]
        if not 0 <= tid < len(tokenizer):
            raise UsageError(f"token id {tid} is outside the vocabulary (size {len(tokenizer)})")
        ids.append(int(tid))
    if len(set(ids)) != len(ids):
        raise UsageError(f"answers {list(answers)} share first tokens {ids}",
                         hint="give answers that start with different tokens, or token ids")
    return ids


@dataclass
class LogitsResult:
    logits: Any  # torch.Tensor [rows, vocab] or [rows, answers], float32, CPU
    token_ids: list[int] | None = None  # the answers' token ids, in column order
    answers: list[str] | None = None

    @property
    def probs(self):
        """Softmax over the columns: over the answers when restricted, else over the vocabulary."""
        return self.logits.softmax(dim=-1)


def next_token_logits(model, tokenizer, texts: Sequence[str], *, answers: Sequence[str | int] | None = None,
                      add_special_tokens: bool = False, batch_size: int = 8,
                      progress: Progress | None = None) -> LogitsResult:
    """Logits of the token after each prompt; restricted to `answers` when given."""
    import torch

    ids = answer_token_ids(tokenizer, answers) if answers else None
    device = model_device(model)
    out = []
    for chunk in batched(texts, batch_size):
        batch = encode(tokenizer, chunk, add_special_tokens=add_special_tokens, device=device)
        logits = forward(model, batch).logits[:, -1, :].float()
        if ids is not None:
            logits = logits[:, ids]
        out.append(logits.cpu())
        if progress:
            progress(len(chunk))
    vocab = len(ids) if ids is not None else model.get_output_embeddings().weight.shape[0]
    stacked = torch.cat(out) if out else torch.empty(0, vocab)
    return LogitsResult(stacked, ids, [str(a) for a in answers] if answers else None)


def generate(model, tokenizer, texts: Sequence[str], *, max_new_tokens: int = 32, do_sample: bool = False,
             temperature: float | None = None, add_special_tokens: bool = False, batch_size: int = 8,
             progress: Progress | None = None) -> list[str]:
    """Continuations of each prompt, greedy unless do_sample; the prompt is not included."""
    import torch

    device = model_device(model)
    results: list[str] = []
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample,
                              "pad_token_id": tokenizer.pad_token_id}
    if do_sample and temperature is not None:
        kwargs["temperature"] = temperature
    if not do_sample:  # silence sampling defaults a generation_config may carry
        kwargs.update(temperature=None, top_p=None, top_k=None)
    for chunk in batched(texts, batch_size):
        batch = encode(tokenizer, chunk, add_special_tokens=add_special_tokens, device=device)
        batch.pop("position_ids")  # generate derives them from the mask
        with torch.inference_mode():
            seqs = model.generate(**batch, **kwargs)
        new = seqs[:, batch["input_ids"].shape[1]:]
        results.extend(tokenizer.batch_decode(new, skip_special_tokens=True))
        if progress:
            progress(len(chunk))
    return results
