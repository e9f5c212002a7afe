"""Calibration metrics as pure functions, so they can be pinned on hand-computed cases.

`p` is the model's probability of the positive label, `y` the true label (1 positive, 0 negative).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ECE_BINS = 10


def _arrays(p: Sequence[float], y: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    p_arr = np.asarray(p, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    if p_arr.shape != y_arr.shape or p_arr.ndim != 1:
        raise ValueError(f"p and y must be 1-d and the same length (got {p_arr.shape} and {y_arr.shape})")
    if p_arr.size and (p_arr.min() < 0 or p_arr.max() > 1):
        raise ValueError("probabilities must lie in [0, 1]")
    if not set(np.unique(y_arr)) <= {0.0, 1.0}:
        raise ValueError("labels must be 0 or 1")
    return p_arr, y_arr


def brier(p: Sequence[float], y: Sequence[int]) -> float:
    """Mean squared error of the positive-label probability (binary Brier score; 0 is perfect)."""
    p_arr, y_arr = _arrays(p, y)
    if p_arr.size == 0:
        return float("nan")
    return float(np.mean((p_arr - y_arr) ** 2))


def ece(p: Sequence[float], y: Sequence[int], n_bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width bins of the positive-label probability.

    Bins are [0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1] (the last one closed). Per bin the gap is
    |mean(y) - mean(p)|; ECE is the sample-weighted mean gap. This is the "reliability diagram"
    ECE of the positive class, not the top-label ECE of multi-class papers.
    """
    p_arr, y_arr = _arrays(p, y)
    if p_arr.size == 0:
        return float("nan")
    idx = np.minimum((p_arr * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(y_arr[mask].mean() - p_arr[mask].mean())
    return float(total / p_arr.size)


def auc(p: Sequence[float], y: Sequence[int]) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(p_pos > p_neg), ties counted as one half.

    Undefined (NaN) when only one class is present.
    """
    p_arr, y_arr = _arrays(p, y)
    pos = p_arr[y_arr == 1]
    neg = p_arr[y_arr == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (pos.size * neg.size))


def accuracy(p: Sequence[float], y: Sequence[int], threshold: float = 0.5) -> float:
    """Share of samples whose more probable label is the true one (p >= threshold means positive)."""
    p_arr, y_arr = _arrays(p, y)
    if p_arr.size == 0:
        return float("nan")
    return float(np.mean((p_arr >= threshold) == (y_arr == 1)))
