"""Paired statistics over per-item scores: exact McNemar, sign-flip permutation, (cluster, two-level) bootstrap, Holm.

Pure functions of numpy arrays; every random draw comes from `numpy.random.default_rng(seed)` so the
same inputs give the same numbers. The resampling unit is the *cluster* (items sharing a cluster id
move together; with no clusters each item is its own cluster), and with seed replicates the seeds of
each side are resampled too (a two-level bootstrap: seeds, then the shared item clusters).

The bootstrap draws its indices exactly as scipy.stats.bootstrap(paired=True, method="percentile")
does and the permutation test computes its p-value as scipy.stats.permutation_test does, so both are
pinned to scipy by tests on fixed data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 9999  # bootstrap resamples and random sign flips
SEED = 0
LEVEL = 0.95


class PairingError(ValueError):
    """Two sides of a comparison were not scored on the same items."""


@dataclass(frozen=True)
class Paired:
    """One comparison's numbers: a minus b on n paired items."""

    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p: float
    test: str
    clusters: int
    naive_ci_low: float | None = None  # the interval when items are treated as independent (clustered only)
    naive_ci_high: float | None = None


def is_binary(*arrays) -> bool:
    return all(bool(np.isin(np.asarray(a, dtype=float), (0.0, 1.0)).all()) for a in arrays)


def mcnemar_exact(a, b) -> float:
    """Two-sided exact McNemar p-value of paired binary outcomes: a binomial test on the discordant pairs."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n10 = int(((a == 1) & (b == 0)).sum())
    n01 = int(((a == 0) & (b == 1)).sum())
    if n10 + n01 == 0:
        return 1.0
    return float(binomtest(n10, n10 + n01, 0.5).pvalue)


def holm(pvalues) -> list[float]:
    """Holm-Bonferroni adjusted p-values (statsmodels), in the input order; NaN stays NaN, outside the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    known = ~np.isnan(p)
    if known.any():
        out[known] = multipletests(p[known], method="holm")[1]
    return out.tolist()


def cluster_sums(values, clusters=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster sums of values and cluster sizes, clusters in order of first appearance."""
    v = np.asarray(values, dtype=float)
    if clusters is None:
        return v, np.ones(len(v))
    keys = list(dict.fromkeys(clusters))
    index = {k: i for i, k in enumerate(keys)}
    ids = np.array([index[c] for c in clusters])
    return np.bincount(ids, weights=v, minlength=len(keys)), np.bincount(ids, minlength=len(keys)).astype(float)


def percentile_interval(replicates, level: float = LEVEL) -> tuple[float, float]:
    alpha = (1 - level) / 2
    low, high = np.percentile(np.asarray(replicates, dtype=float), [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def bootstrap_mean(values, clusters=None, *, resamples: int = RESAMPLES, seed: int = SEED,
                   level: float = LEVEL) -> tuple[float, float]:
    """Percentile-bootstrap interval of a mean, resampling whole clusters (ratio of resampled sums to sizes)."""
    sums, sizes = cluster_sums(values, clusters)
    rng = np.random.default_rng(seed)
    g = len(sums)
    chunk = max(1, 4_000_000 // g)  # bound memory; drawn in chunks, the stream is the same as in one draw
    reps = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, g, (min(chunk, resamples - start), g))
        reps.append(sums[idx].sum(axis=1) / sizes[idx].sum(axis=1))
    return percentile_interval(np.concatenate(reps), level)


def sign_flip_p(diffs, clusters=None, *, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, bool]:
    """Two-sided paired permutation p-value of mean(diffs) = 0 by flipping the sign of each cluster's sum.

    Exact (every sign pattern) when 2**clusters <= resamples, else `resamples` random patterns with
    scipy's (count + 1) / (resamples + 1). Returns (p, exact).
    """
    sums, sizes = cluster_sums(diffs, clusters)
    g = len(sums)
    observed = sums.sum() / sizes.sum()
    if 2 ** g <= resamples:
        signs = 1 - 2 * ((np.arange(2 ** g)[:, None] >> np.arange(g)[None, :]) & 1)
        adjustment, exact = 0, True
        null = (signs * sums).sum(axis=1) / sizes.sum()
    else:
        rng = np.random.default_rng(seed)
        chunk = max(1, 4_000_000 // g)  # bound the (flips x clusters) sign matrix
        null = np.concatenate([(1 - 2 * rng.integers(0, 2, (min(chunk, resamples - s), g))) @ sums / sizes.sum()
                               for s in range(0, resamples, chunk)])
        adjustment, exact = 1, False
    gamma = abs(np.finfo(float).eps * 100 * observed)  # as scipy: ties within rounding count as ties
    n = len(null)
    less = ((null <= observed + gamma).sum() + adjustment) / (n + adjustment)
    greater = ((null >= observed - gamma).sum() + adjustment) / (n + adjustment)
    return float(min(1.0, 2 * min(less, greater))), exact


def compare(a, b, clusters=None, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> Paired:
    """a minus b on the same items (rows aligned): interval by cluster bootstrap of the mean difference;
    p by exact McNemar (binary scores, independent items) or a sign-flip permutation test (continuous
    scores, or clustered items, with signs flipped per cluster)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise PairingError(f"paired scores need two equal-length, non-empty rows of items (got {a.shape}, {b.shape})")
    d = a - b
    clustered = clusters is not None and len(set(clusters)) < len(d)
    low, high = bootstrap_mean(d, clusters if clustered else None, resamples=resamples, seed=seed, level=level)
    naive = bootstrap_mean(d, resamples=resamples, seed=seed, level=level) if clustered else (None, None)
    if is_binary(a, b) and not clustered:
        p, test = mcnemar_exact(a, b), "exact McNemar"
    else:
        p, exact = sign_flip_p(d, clusters if clustered else None, resamples=resamples, seed=seed)
        test = ("cluster " if clustered else "") + ("exact permutation" if exact else f"permutation ({resamples} sign flips)")
    test += f"; {'cluster ' if clustered else ''}bootstrap CI ({resamples} resamples, seed {seed})"
    return Paired(n=len(d), mean_a=float(a.mean()), mean_b=float(b.mean()), diff=float(d.mean()),
                  ci_low=low, ci_high=high, p=p, test=test,
                  clusters=len(set(clusters)) if clustered else len(d),
                  naive_ci_low=naive[0], naive_ci_high=naive[1])


def compare_replicates(a, b, clusters=None, *, resamples: int = RESAMPLES, seed: int = SEED,
                       level: float = LEVEL) -> Paired:
    """a minus b where each side has replicates (seeds): arrays of shape (seeds, items), items aligned.

    The estimate is mean over a's seeds and items minus the same for b. Two-level bootstrap: each
    resample draws seeds with replacement within each side, then item clusters with replacement
    (the same clusters for both sides: they are paired). p is the two-sided bootstrap p-value,
    2 x (the smaller count of resampled differences on either side of 0, + 1) / (resamples + 1).
    With one seed on each side this is `compare` (same interval; McNemar/permutation p).
    """
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape[1] != b.shape[1] or a.shape[1] == 0:
        raise PairingError(f"replicates need the same, non-empty items on both sides (got {a.shape}, {b.shape})")
    if a.shape[0] == 1 and b.shape[0] == 1:
        return compare(a[0], b[0], clusters, resamples=resamples, seed=seed, level=level)
    rng = np.random.default_rng(seed)
    clustered = clusters is not None and len(set(clusters)) < a.shape[1]
    keys = list(dict.fromkeys(clusters)) if clustered else list(range(a.shape[1]))
    index = {k: i for i, k in enumerate(keys)}
    ids = np.array([index[c] for c in clusters]) if clustered else np.arange(a.shape[1])
    g = len(keys)

    def by_cluster(m):  # (seeds, clusters) sums
        return np.stack([np.bincount(ids, weights=row, minlength=g) for row in m])

    sa, sb = by_cluster(a), by_cluster(b)
    sizes = np.bincount(ids, minlength=g).astype(float)
    parts = []
    chunk = max(1, 4_000_000 // max(g, 1))  # bound the (resamples x clusters) weight matrix
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        ia = rng.integers(0, a.shape[0], (k, a.shape[0]))
        ib = rng.integers(0, b.shape[0], (k, b.shape[0]))
        ic = rng.integers(0, g, (k, g))
        weights = np.zeros((k, g))
        np.add.at(weights, (np.repeat(np.arange(k), g), ic.ravel()), 1.0)  # times each cluster was drawn
        n = weights @ sizes  # items per resample
        ta, tb = (sa @ weights.T).T, (sb @ weights.T).T  # (k, seeds): each seed's resampled item sum
        parts.append((np.take_along_axis(ta, ia, 1).mean(1) - np.take_along_axis(tb, ib, 1).mean(1)) / n)
    reps = np.concatenate(parts)
    low, high = percentile_interval(reps, level)
    diff = float(a.mean() - b.mean())
    # two-sided bootstrap p, never 0: (count + 1) / (resamples + 1) on the smaller side
    p = 1.0 if np.all(reps == 0) else float(min(1.0, 2 * (min((reps <= 0).sum(), (reps >= 0).sum()) + 1)
                                                / (resamples + 1)))
    test = (f"two-level {'cluster ' if clustered else ''}bootstrap ({a.shape[0]} vs {b.shape[0]} seeds, "
            f"{resamples} resamples, seed {seed})")
    return Paired(n=a.shape[1], mean_a=float(a.mean()), mean_b=float(b.mean()), diff=diff, ci_low=low,
                  ci_high=high, p=p, test=test, clusters=g)


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) of replicate scores (seeds): Student-t interval for the mean (NaN for one value)."""
    from scipy.stats import t

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    sd = float(x.std(ddof=1))
    half = float(t.ppf(1 - (1 - level) / 2, len(x) - 1)) * sd / math.sqrt(len(x))
    return mean, sd, mean - half, mean + half
