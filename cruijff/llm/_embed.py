"""Pooling of hidden states into one vector per sequence, aware of padding on either side.

Modes (the attention mask decides what is "real"):
  mean, median, max    over the real tokens only (median: the lower median, as torch.median)
  first                the first real token
  last                 the last position of the sequence, padding or not
                       (with left padding it is the last real token; with right padding it may be padding)
  last_non_padding     the last real token, whichever side the padding is on
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cruijff.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

POOLING_MODES = ("mean", "median", "max", "first", "last", "last_non_padding")


def _check(hidden: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    if hidden.dim() != 3 or mask.shape != hidden.shape[:2]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and mask {tuple(mask.shape)} do not match "
                         "([batch, seq, dim] and [batch, seq])")
    mask = mask.to(device=hidden.device).bool()
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a sequence has no real token (attention mask all zero)")
    return mask


def first_real_index(mask: "torch.Tensor") -> "torch.Tensor":
    """Index of the first 1 in each row of a 0/1 mask."""
    import torch

    return torch.argmax(mask.long(), dim=1)


def last_real_index(mask: "torch.Tensor") -> "torch.Tensor":
    """Index of the last 1 in each row of a 0/1 mask."""
    import torch

    seq = mask.shape[1]
    return seq - 1 - torch.argmax(mask.long().flip(dims=[1]), dim=1)


def pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor", mode: str = "mean") -> "torch.Tensor":
    """[batch, seq, dim] hidden states + [batch, seq] mask -> [batch, dim]."""
    import torch

    if mode not in POOLING_MODES:
        raise UsageError(f"unknown pooling mode {mode!r}", hint=f"use one of {', '.join(POOLING_MODES)}")
    mask = _check(hidden, attention_mask)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(dim=1) / m.sum(dim=1)
    if mode == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(dim=1).values
    if mode == "median":
        # Rows have different numbers of real tokens, so one row at a time.
        return torch.stack([torch.median(hidden[i][mask[i]], dim=0).values for i in range(hidden.shape[0])])
    if mode == "first":
        return hidden[rows, first_real_index(mask)]
    if mode == "last":
        return hidden[:, -1]
    return hidden[rows, last_real_index(mask)]  # last_non_padding


def select_layer(hidden_states: tuple, layer: int) -> "torch.Tensor":
    """hidden_states[0] is the embedding output, [-1] the last layer (after the final norm)."""
    n = len(hidden_states)
    if not -n <= layer < n:
        raise UsageError(f"layer {layer} is out of range for a model with {n - 1} layers",
                         hint=f"use 0..{n - 1} (0 = embeddings) or -1..-{n}")
    return hidden_states[layer]


def embeddings(model, tokenizer, texts, *, layer: int = -1, pooling: str = "mean",
               add_special_tokens: bool = False, batch_size: int = 8, padding_side: str = "left",
               progress=None) -> "torch.Tensor":
    """[rows, hidden] float32 CPU tensor: `layer`'s hidden states pooled per prompt."""
    import torch

    from cruijff.llm._forward import batched, encode, forward, model_device

    if pooling not in POOLING_MODES:
        raise UsageError(f"unknown pooling mode {pooling!r}", hint=f"use one of {', '.join(POOLING_MODES)}")
    device = model_device(model)
    out = []
    for chunk in batched(texts, batch_size):
        batch = encode(tokenizer, chunk, add_special_tokens=add_special_tokens,
                       padding_side=padding_side, device=device)
        hidden = select_layer(forward(model, batch, hidden_states=True).hidden_states, layer)
        out.append(pool(hidden.float(), batch["attention_mask"], pooling).cpu())
        if progress:
            progress(len(chunk))
    if not out:
        return torch.empty(0, model.config.get_text_config().hidden_size)
    return torch.cat(out)
