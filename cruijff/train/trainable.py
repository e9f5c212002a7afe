"""What a run can train on: the answer tokens that survive truncation, and a step's sanity.

Shared by the recipes (checked at dataset setup and every step) and by `cruijff.train.measure`,
which `cruijff plan` runs in a subprocess so that it counts the rows training will count, with
the same function. Imports torch and torchtune: never from plan itself.
"""

from __future__ import annotations

import math

import torch
from torchtune import utils
from torchtune.datasets import PackedDataset

from cruijff.errors import CruijffError

log = utils.get_logger("INFO")


class TrainingError(CruijffError):
    """The run would train on nothing, or diverged: stop it rather than report a score for it."""


TRUNCATION_FIX = ("raise max_seq_len (finetune.hyperparameters.max_seq_len in the manifest), or shorten "
                  "the prompt (prompt.template, prompt.system) or the inputs")

DIVERGED_FIX = "lower the learning rate, set clip_grad_norm, or train in fp32/bf16 rather than fp16"


def trainable_tokens(sample: dict, ignore_index: int) -> int:
    """Label positions the loss sees in one sample: the recipes shift labels left by one."""
    labels = sample["labels"]
    if isinstance(labels, torch.Tensor):
        return int((labels[1:] != ignore_index).sum())
    return sum(1 for x in list(labels)[1:] if int(x) != ignore_index)


def unpacked(ds):
    """The rows a dataset is built from (a PackedDataset packs rows that were truncated one by one)."""
    return ds.ds if isinstance(ds, PackedDataset) else ds


def check_trainable(ds, *, ignore_index: int, split: str, max_seq_len: int | None) -> list[int]:
    """Rows of a dataset with no trainable token; raise when that is every row.

    Checked on the samples the dataset returns (after the tokenizer's truncation), so whatever
    builds them, a row whose whole answer was cut is found before training, not as a NaN loss.
    A PackedDataset is checked on the rows it packs.
    """
    rows = unpacked(ds)
    empty = [i for i in range(len(rows)) if trainable_tokens(rows[i], ignore_index) == 0]
    limit = f"max_seq_len {max_seq_len}" if max_seq_len else "the tokenizer's max_seq_len"
    if rows and len(empty) == len(rows):
        raise TrainingError(
            f"no row of the {split} split keeps an answer token for the loss: truncation to {limit} "
            f"cuts every answer (all {len(rows)} rows)", hint=TRUNCATION_FIX)
    if empty:
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        log.warning(f"{len(empty)} of {len(rows)} rows of the {split} split keep no answer token after "
                    f"truncation to {limit} (rows {shown}); they add nothing to the loss. "
                    f"To use them: {TRUNCATION_FIX}")
    return empty


def check_step(*, step: int, epoch: int, loss: float, tokens: int, lr: float) -> None:
    """A step that trained on no token, or whose loss is NaN/inf, ends the run with its cause."""
    if tokens == 0:
        raise TrainingError(
            f"optimizer step {step} (epoch {epoch}) trained on 0 tokens: every row of its batch lost its "
            "answer to truncation, and its update turns the weights into NaN", hint=TRUNCATION_FIX)
    if not math.isfinite(loss):
        raise TrainingError(
            f"training loss is {loss} at optimizer step {step} (epoch {epoch}): the run diverged",
            hint=f"{DIVERGED_FIX} (the learning rate is now {lr:.3g})")
