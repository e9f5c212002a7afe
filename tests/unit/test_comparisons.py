"""cruijff report's paired comparisons on a plan with per-sample inspect logs: pairing by sample id,
the numbers against scipy/statsmodels, Holm over the report, refusal of unpaired items, seeds, clusters."""

from __future__ import annotations

import importlib
import json
import re
import zipfile

import numpy as np
import pytest

from cruijff.results import paired
from cruijff.results.comparisons import COLUMNS
from tests.helpers_report import grid_plan

pd = importlib.import_module("pandas")
ct = importlib.import_module("statsmodels.stats.contingency_tables")
multitest = importlib.import_module("statsmodels.stats.multitest")


def _items(root, node, scorer):
    """sample id -> value straight from a log's samples (not through cruijff's reader)."""
    log = next((root / node / "logs").glob("*.eval"))
    out = {}
    with zipfile.ZipFile(log) as zf:
        for name in zf.namelist():
            if name.startswith("samples/"):
                s = json.loads(zf.read(name))
                v = s["scores"][scorer]["value"]
                out[s["id"]] = (1.0 if v == "C" else 0.0) if isinstance(v, str) else v
    return out


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    from cruijff.results.report import build_report

    root = grid_plan(tmp_path_factory.mktemp("grid"))
    return root, build_report(root)


def test_table_columns_and_family(grid):
    root, r = grid
    df = pd.read_csv(r.tables["comparisons.csv"])
    assert list(df.columns[:len(COLUMNS)]) == COLUMNS
    assert list(pd.read_parquet(r.tables["comparisons.parquet"]).columns) == list(df.columns)
    # 4 runs x 2 epochs x 2 tasks vs base, and 4 one-setting-apart pairs per task at the last epoch
    assert (df["kind"] == "vs base").sum() == 16 and (df["kind"] == "one setting apart").sum() == 8
    assert list(df["p_holm"]) == pytest.approx(list(multitest.multipletests(df["p"], method="holm")[1]), rel=1e-12)
    pair = df[(df["a"] == "lr1e-3_r32 @ epoch 1") & (df["b"] == "lr1e-3_r8 @ epoch 1")]
    assert set(pair["task"]) == {"capitalization", "numbers"}


def test_binary_row_equals_statsmodels_mcnemar_on_the_logs(grid):
    root, r = grid
    a = _items(root, "eval/lr1e-3_r32/epoch_1/capitalization", "exact_match")
    b = _items(root, "base_eval/smollm2/words/capitalization", "exact_match")
    ids = sorted(a)
    xa, xb = np.array([a[i] for i in ids]), np.array([b[i] for i in ids])
    row = next(x for x in r.comparisons.rows if x["a"] == "lr1e-3_r32 @ epoch 1" and x["task"] == "capitalization"
               and x["kind"] == "vs base")
    table = [[int(((xa == i) & (xb == j)).sum()) for j in (1, 0)] for i in (1, 0)]
    assert row["p"] == pytest.approx(ct.mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert (row["n"], row["mean_a"], row["mean_b"]) == (60, pytest.approx(xa.mean()), pytest.approx(xb.mean()))
    ref = paired.compare(xa, xb)
    assert (row["diff"], row["ci_low"], row["ci_high"]) == (ref.diff, ref.ci_low, ref.ci_high)
    assert row["test"].startswith("exact McNemar")


def test_clustered_items_use_the_cluster_and_show_the_naive_interval(grid):
    root, r = grid
    row = next(x for x in r.comparisons.rows if x["a"] == "lr1e-4_r8 @ epoch 1" and x["task"] == "numbers"
               and x["kind"] == "vs base")
    a = _items(root, "eval/lr1e-4_r8/epoch_1/numbers", "continuous")
    b = _items(root, "base_eval/smollm2/words/numbers", "continuous")
    ids = sorted(a)
    ref = paired.compare([a[i] for i in ids], [b[i] for i in ids], [f"twin{i // 2}" for i in ids])
    assert row["clusters"] == 30 and row["test"].startswith("cluster permutation")
    assert (row["p"], row["ci_low"], row["naive_ci_low"]) == (ref.p, ref.ci_low, ref.naive_ci_low)
    assert "items as independent" in r.html.read_text()


def test_headline_and_page_text(grid):
    root, r = grid
    page = r.html.read_text()
    text = re.sub(r"<[^>]+>", " ", re.sub(r'src="data:[^"]+"', "", page))
    for bad in (r"\bNone\b", r"&lt;NA&gt;", r"\bnan\b", r"\bNaN\b", "GPU-hours"):
        assert not re.search(bad, text), bad
    row = next(x for x in r.comparisons.rows if x["a"] == "lr1e-3_r32 @ epoch 1" and x["task"] == "capitalization"
               and x["kind"] == "vs base")
    assert f"{row['diff']:+.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" in page  # in the headline table
    assert "exact_match/stderr" not in text.split("Details")[0]  # a spread is not shown as a score


def test_different_item_sets_are_refused(tmp_path):
    from cruijff.results.report import build_report

    r = build_report(grid_plan(tmp_path, drop_items=3))
    refused = [x for x in r.comparisons.refused if x.startswith("lr1e-3_r32 @ epoch 1 vs")]
    assert refused and all("different items (0 only in a, 3 only in b" in x for x in refused)
    assert not any(x["a"] == "lr1e-3_r32 @ epoch 1" and x["task"] == "capitalization" for x in r.comparisons.rows)


def test_seeds_are_replicates(tmp_path):
    from cruijff.results.report import build_report

    r = build_report(grid_plan(tmp_path, seeds=(1, 2, 3)))
    rows = [x for x in r.comparisons.rows if x["epoch"] == 1 and x["task"] == "capitalization"]
    assert len(rows) == 1  # one setting (three seeds) against the base; no seed-vs-seed comparisons
    assert rows[0]["a"].startswith('{') is False and "(3 seeds)" in rows[0]["a"]
    assert rows[0]["test"].startswith("two-level bootstrap (3 vs 1 seeds,")
    seeds = [np.mean(list(_items(tmp_path, f"eval/lr1e-3_r8_seed{s}/epoch_1/capitalization", "exact_match").values()))
             for s in (1, 2, 3)]
    mean, sd, lo, hi = paired.t_interval(seeds)
    assert f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" in r.html.read_text() and f"sd {sd:.3f}, 3 seeds" in r.html.read_text()


def test_report_command_prints_the_comparison(grid, tmp_path):
    from click.testing import CliRunner

    from cruijff.cli import cli

    root, r = grid
    out = CliRunner().invoke(cli, ["report", str(root), "--out", str(tmp_path / "rep")])
    assert out.exit_code == 0, out.output
    row = next(x for x in r.comparisons.rows if x["a"] == "lr1e-3_r32 @ epoch 1" and x["task"] == "capitalization"
               and x["kind"] == "vs base")
    expected = (f"difference {row['diff']:+.3f} [95% CI {row['ci_low']:.3f}, {row['ci_high']:.3f}], "
                f"p < 0.001 (Holm p < 0.001), n = 60 items")
    assert expected in out.output
    assert "lr1e-3_r32 @ epoch 0" not in out.output  # each run at its last epoch
