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


def bin_ids(p: Sequence[float], n_bins: int = ECE_BINS) -> np.ndarray:
    """Equal-width bin of each probability, scikit-learn's `calibration_curve` convention.

    Bins are right-closed with 0 in the first: [0, 1/n], (1/n, 2/n], ..., ((n-1)/n, 1]
    (np.searchsorted on the inner edges, as sklearn.calibration.calibration_curve does).
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], np.asarray(p, dtype=float))


def reliability(p: Sequence[float], y: Sequence[int], n_bins: int = ECE_BINS
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per non-empty bin: (samples, mean y, mean p), the reliability diagram.

    mean y and mean p equal calibration_curve(y, p, n_bins)'s (prob_true, prob_pred).
    """
    p_arr, y_arr = _arrays(p, y)
    ids = bin_ids(p_arr, n_bins)
    counts = np.bincount(ids, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y_arr, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p_arr, minlength=n_bins)
    keep = counts > 0
    return counts[keep], sum_y[keep] / counts[keep], sum_p[keep] / counts[keep]


def ece(p: Sequence[float], y: Sequence[int], n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the positive-label probability (the "risk" ECE).

    Sum over bins (see bin_ids) of samples/N × |mean(y) - mean(p)|; the binning is scikit-learn's
    and cruijff_kit's, so the numbers compare.
    """
    p_arr, _ = _arrays(p, y)
    if p_arr.size == 0:
        return float("nan")
    counts, mean_y, mean_p = reliability(p, y, n_bins)
    return float(np.sum(counts * np.abs(mean_y - mean_p)) / p_arr.size)


def top_label(p: Sequence[float], y: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, correct) of the predicted label: positive when p >= 0.5, so a tie at 0.5
    predicts positive (as accuracy does); confidence is max(p, 1 - p)."""
    p_arr, y_arr = _arrays(p, y)
    predicted = p_arr >= 0.5
    return np.where(predicted, p_arr, 1 - p_arr), (predicted == (y_arr == 1)).astype(float)


def confidence_ece(p: Sequence[float], y: Sequence[int], n_bins: int = ECE_BINS) -> float:
    """Top-label (confidence) ECE: "when the model is 80% sure of its answer, is it right 80% of
    the time?"; the same bins over confidences, which lie in [0.5, 1]."""
    confidence, correct = top_label(p, y)
    return ece(confidence, correct.astype(int), n_bins)


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


# ---- numeric answers -----------------------------------------------------------------------------

def regression(predicted: Sequence[float], target: Sequence[float]) -> dict[str, float]:
    """Error metrics of numeric answers against numeric targets.

    mae, rmse, bias (mean of predicted - target), r2 (1 - SS_res / SS_tot, NaN when the targets
    are all equal: undefined, where scikit-learn's r2_score would force 0 or 1), and the spread of
    the answers (pred_std, population SD: 0 is the tell of a model that always says one number).
    All NaN when there is no pair.
    """
    pr = np.asarray(predicted, dtype=float)
    tg = np.asarray(target, dtype=float)
    if pr.shape != tg.shape or pr.ndim != 1:
        raise ValueError(f"predicted and target must be 1-d and the same length (got {pr.shape} and {tg.shape})")
    nan = float("nan")
    if pr.size == 0:
        return {"mae": nan, "rmse": nan, "bias": nan, "r2": nan, "pred_std": nan}
    err = pr - tg
    ss_tot = float(np.sum((tg - tg.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "bias": float(np.mean(err)),
        "r2": 1.0 - float(np.sum(err ** 2)) / ss_tot if ss_tot > 0 else nan,
        "pred_std": float(np.std(pr)),
    }
