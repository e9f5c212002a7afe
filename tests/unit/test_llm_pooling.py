"""Pooling against hand-computed tensors, with padding on the left and on the right."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import require

require(importlib.util.find_spec("torch") is not None, "torch is not installed")

import torch  # noqa: E402

from cruijff.errors import UsageError  # noqa: E402
from cruijff.llm import POOLING_MODES, pool, select_layer  # noqa: E402
from cruijff.llm._embed import first_real_index, last_real_index  # noqa: E402

# Two sequences, dim 2. Row 0 has 3 real tokens, row 1 has 2 (one padding position).
REAL0 = [[1.0, 10.0], [3.0, -2.0], [2.0, 4.0]]
REAL1 = [[5.0, 0.0], [-1.0, 6.0]]
PAD = [100.0, -100.0]  # junk that must never leak into a pooled value


def batch(side: str):
    if side == "right":
        hidden = torch.tensor([REAL0, REAL1 + [PAD]])
        mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    else:
        hidden = torch.tensor([REAL0, [PAD] + REAL1])
        mask = torch.tensor([[1, 1, 1], [0, 1, 1]])
    return hidden, mask


EXPECTED = {
    "mean": [[2.0, 4.0], [2.0, 3.0]],
    "median": [[2.0, 4.0], [-1.0, 0.0]],  # lower median of two values, as torch.median
    "max": [[3.0, 10.0], [5.0, 6.0]],
    "first": [REAL0[0], REAL1[0]],
    "last_non_padding": [REAL0[-1], REAL1[-1]],
}


@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_pooling_ignores_padding_on_either_side(mode, side):
    hidden, mask = batch(side)
    assert torch.equal(pool(hidden, mask, mode), torch.tensor(EXPECTED[mode]))


def test_last_is_the_last_position_even_when_padding():
    hidden, mask = batch("right")
    assert torch.equal(pool(hidden, mask, "last"), torch.tensor([REAL0[-1], PAD]))
    hidden, mask = batch("left")  # with left padding the last position is the last real token
    assert torch.equal(pool(hidden, mask, "last"), torch.tensor([REAL0[-1], REAL1[-1]]))


def test_modes_are_all_covered():
    assert set(EXPECTED) | {"last"} == set(POOLING_MODES)


def test_real_token_indices():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]])
    assert first_real_index(mask).tolist() == [2, 0, 1, 0]
    assert last_real_index(mask).tolist() == [3, 1, 2, 3]


def test_mask_may_be_bool_or_float():
    hidden, mask = batch("left")
    assert torch.equal(pool(hidden, mask.bool(), "mean"), pool(hidden, mask.float(), "mean"))


def test_bad_inputs():
    hidden, mask = batch("left")
    with pytest.raises(UsageError, match="unknown pooling"):
        pool(hidden, mask, "sum")
    with pytest.raises(ValueError, match="do not match"):
        pool(hidden, mask[:, :2], "mean")
    with pytest.raises(ValueError, match="no real token"):
        pool(hidden, torch.tensor([[1, 1, 1], [0, 0, 0]]), "mean")


def test_select_layer_counts_embeddings_as_zero_and_allows_negative():
    states = tuple(torch.full((1, 1, 1), float(i)) for i in range(3))  # embeddings + 2 layers
    assert select_layer(states, 0).item() == 0
    assert select_layer(states, -1).item() == 2
    assert select_layer(states, -3).item() == 0
    for bad in (3, -4):
        with pytest.raises(UsageError, match="out of range"):
            select_layer(states, bad)
