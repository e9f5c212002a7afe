"""cruijff.results.paired against scipy and statsmodels on fixed data (exact values)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cruijff.results import paired

stats = importlib.import_module("scipy.stats")
ct = importlib.import_module("statsmodels.stats.contingency_tables")
multitest = importlib.import_module("statsmodels.stats.multitest")
weightstats = importlib.import_module("statsmodels.stats.weightstats")
proportion = importlib.import_module("statsmodels.stats.proportion")

# Binary scores of two models on the same 20 items (ties: many concordant pairs).
A = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1], dtype=float)
B = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0], dtype=float)
# Continuous scores (absolute errors) with ties in the differences.
X = np.array([0.5, 1.0, 2.0, 0.0, 3.5, 1.0, 0.25, 2.0, 1.5, 0.75, 1.0, 2.5])
Y = np.array([1.0, 1.5, 2.0, 0.5, 4.0, 2.0, 0.25, 2.5, 1.0, 1.75, 1.5, 3.5])
# Items in 6 clusters of 2 (twin pairs).
CLUSTERS = ["t1", "t1", "t2", "t2", "t3", "t3", "t4", "t4", "t5", "t5", "t6", "t6"]


def _scipy_bootstrap(data, statistic, resamples=paired.RESAMPLES, seed=paired.SEED):
    res = stats.bootstrap(data, statistic, paired=True, vectorized=True, n_resamples=resamples,
                          method="percentile", confidence_level=0.95, rng=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


def _scipy_sign_flip(x, y, resamples=paired.RESAMPLES, seed=paired.SEED):
    res = stats.permutation_test((x, y), lambda u, v, axis: np.mean(u - v, axis=axis), permutation_type="samples",
                                 vectorized=True, n_resamples=resamples, alternative="two-sided",
                                 rng=np.random.default_rng(seed))
    return res.pvalue


def test_mcnemar_exact_equals_statsmodels():
    table = [[int(((A == i) & (B == j)).sum()) for j in (1, 0)] for i in (1, 0)]
    assert paired.mcnemar_exact(A, B) == pytest.approx(ct.mcnemar(table, exact=True).pvalue, rel=1e-12)
    r = paired.compare(A, B)
    assert r.test.startswith("exact McNemar") and r.n == 20
    assert (r.mean_a, r.mean_b, r.diff) == pytest.approx((0.75, 0.45, 0.30))
    assert (r.ci_low, r.ci_high) == pytest.approx(_scipy_bootstrap((A - B,), lambda d, axis: d.mean(axis=axis)),
                                                  abs=1e-12)


def test_all_items_equal():
    r = paired.compare(A, A)
    assert r.p == 1.0 == ct.mcnemar([[15, 0], [0, 5]], exact=True).pvalue
    assert (r.diff, r.ci_low, r.ci_high) == (0.0, 0.0, 0.0)
    same = paired.compare(X, X)
    assert same.p == 1.0 and (same.ci_low, same.ci_high) == (0.0, 0.0)


def test_continuous_permutation_and_bootstrap_equal_scipy():
    r = paired.compare(X, Y)
    p, exact = paired.sign_flip_p(X - Y)
    assert exact and r.test.startswith("exact permutation")
    assert r.p == p == pytest.approx(_scipy_sign_flip(X, Y), rel=1e-12)  # 2**12 <= 9999: every sign pattern
    assert (r.ci_low, r.ci_high) == pytest.approx(_scipy_bootstrap((X - Y,), lambda d, axis: d.mean(axis=axis)),
                                                  abs=1e-12)
    assert r.diff == pytest.approx(np.mean(X - Y))


def test_random_sign_flips_equal_scipy_formula_and_are_seeded():
    rng = np.random.default_rng(3)
    x, y = rng.normal(0.2, 1, 40), rng.normal(0, 1, 40)
    p1, exact = paired.sign_flip_p(x - y, resamples=999, seed=5)
    assert not exact and p1 == paired.sign_flip_p(x - y, resamples=999, seed=5)[0]
    # 2 x (count + 1) / (resamples + 1): an even multiple of 1/1000, close to scipy's value with many flips
    assert p1 * 1000 == pytest.approx(2 * round(p1 * 500))
    assert p1 == pytest.approx(_scipy_sign_flip(x, y, resamples=99999), abs=0.04)


def test_clustered_interval_and_p_equal_scipy_on_cluster_sums():
    d = X - Y
    r = paired.compare(X, Y, CLUSTERS)
    sums_a, _ = paired.cluster_sums(X, CLUSTERS)
    sums_b, sizes = paired.cluster_sums(Y, CLUSTERS)
    assert list(sizes) == [2.0] * 6 and r.clusters == 6
    assert r.p == pytest.approx(_scipy_sign_flip(sums_a, sums_b), rel=1e-12)
    assert r.test.startswith("cluster exact permutation")
    ci = _scipy_bootstrap((sums_a - sums_b, sizes), lambda s, n, axis: s.sum(axis=axis) / n.sum(axis=axis))
    assert (r.ci_low, r.ci_high) == pytest.approx(ci, abs=1e-12)
    assert (r.naive_ci_low, r.naive_ci_high) == pytest.approx(
        _scipy_bootstrap((d,), lambda v, axis: v.mean(axis=axis)), abs=1e-12)
    # binary scores in clusters: McNemar assumes independent pairs, so the cluster permutation test is used
    rb = paired.compare(A[:12], B[:12], CLUSTERS)
    assert rb.test.startswith("cluster exact permutation")


def test_unequal_cluster_sizes():
    clusters = ["a", "a", "a", "b", "c", "c", "d", "e", "e", "e", "e", "f"]
    r = paired.compare(X, Y, clusters)
    sa, n = paired.cluster_sums(X - Y, clusters)
    ci = _scipy_bootstrap((sa, n), lambda s, m, axis: s.sum(axis=axis) / m.sum(axis=axis))
    assert (r.ci_low, r.ci_high) == pytest.approx(ci, abs=1e-12)


def test_holm_equals_statsmodels():
    p = [0.01, 0.04, 0.03, 0.005, 0.5, 0.04]
    assert paired.holm(p) == pytest.approx(list(multitest.multipletests(p, method="holm")[1]), rel=1e-12)
    with_nan = paired.holm([0.02, float("nan"), 0.01])
    assert with_nan[0] == pytest.approx(0.02) and np.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.02)


def test_replicates_t_interval_equals_statsmodels():
    seeds = [0.61, 0.64, 0.58, 0.66]
    mean, sd, low, high = paired.t_interval(seeds)
    ds = weightstats.DescrStatsW(np.array(seeds))
    assert (mean, sd) == pytest.approx((ds.mean, ds.std * np.sqrt(4 / 3)), rel=1e-12)
    assert (low, high) == pytest.approx(ds.tconfint_mean(alpha=0.05), rel=1e-12)


def test_wilson_equals_statsmodels():
    from cruijff.results.report_groups import wilson

    assert wilson(15, 20) == pytest.approx(proportion.proportion_confint(15, 20, method="wilson"), rel=1e-12)


def test_two_level_bootstrap():
    one = paired.compare_replicates(X[None, :], Y[None, :])
    assert one == paired.compare(X, Y)  # one seed a side: the paired comparison itself
    rng = np.random.default_rng(1)
    a = X[None, :] + rng.normal(0, 0.3, (3, 12))  # 3 seeds of a setting
    b = np.repeat(Y[None, :], 2, axis=0)  # a deterministic base, two identical replicates
    r = paired.compare_replicates(a, b, resamples=2000)
    assert r == paired.compare_replicates(a, b, resamples=2000)  # seeded
    assert r.diff == pytest.approx(a.mean() - Y.mean()) and r.ci_low < r.diff < r.ci_high
    # seeds add variance: wider than resampling items of the seed mean alone
    items_only = paired.compare(a.mean(axis=0), Y, resamples=2000)
    assert r.ci_high - r.ci_low > items_only.ci_high - items_only.ci_low
    # items all equal within each seed: only seed variation is left
    flat = paired.compare_replicates(np.array([[1.0] * 5, [0.0] * 5]), np.array([[0.5] * 5]), resamples=500)
    assert (flat.ci_low, flat.ci_high) == (-0.5, 0.5)


def test_different_item_counts_are_refused():
    with pytest.raises(paired.PairingError):
        paired.compare(X, Y[:-1])
    with pytest.raises(paired.PairingError):
        paired.compare_replicates(X[None, :], Y[None, :-1])


def test_bootstrap_drawn_in_chunks_equals_scipy():
    d = np.random.default_rng(11).normal(0.1, 1, 500)  # 4e6 // 500 = 8000 < 9999 resamples: two chunks
    assert paired.bootstrap_mean(d) == pytest.approx(
        _scipy_bootstrap((d,), lambda v, axis: v.mean(axis=axis)), abs=1e-12)
