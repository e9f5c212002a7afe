"""cruijff report's research-kit sections on a synthetic plan: scores by group (checked against a hand
computation), the best possible score from a generator's metadata, and what each job cost."""

from __future__ import annotations

import importlib
import json
import math
import zipfile
from pathlib import Path

import pytest

from cruijff.plan import dumps
from cruijff.plan import EVAL, FINETUNE, Node, Plan, Resources

pd = importlib.import_module("pandas")
importlib.import_module("matplotlib")

# (sex, P("1"), true label): F: 2 of 3 right, M: 2 of 3 right
SAMPLES = [("F", 0.9, 1), ("F", 0.4, 0), ("F", 0.6, 0), ("M", 0.2, 0), ("M", 0.7, 1), ("M", 0.3, 1)]


def _eval_log(path: Path, samples: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"version": 2, "status": "success", "eval": {"task": "binary", "model": "hf/local"},
              "results": {"total_samples": len(samples), "completed_samples": len(samples), "scores": [
                  {"name": "label_probability", "metrics": {"label_accuracy": {"value": 4 / 6}}}]}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.json", json.dumps(header))
        for s in samples:
            zf.writestr(f"samples/{s['id']}_epoch_1.json", json.dumps(s))


@pytest.fixture
def plan_dir(tmp_path) -> Path:
    data = tmp_path / "data" / "census.json"
    data.parent.mkdir()
    records = [{"input": f"sex: {sex}", "output": str(y), "meta": {"sex": sex, "age": str(20 + i)}}
               for i, (sex, _, y) in enumerate(SAMPLES)]
    data.write_text(json.dumps({"train": records, "test": records}))
    (tmp_path / "data" / "census.meta.json").write_text(json.dumps({"bayes_optimal_accuracy": 0.8}))
    attrs = {"run": "r1", "model": "tiny", "dataset": "census", "hyperparameters": {}}
    nodes = (Node("finetune/r1", FINETUNE, (), Resources(gpus=2), "h", attrs),
             Node("eval/r1/epoch_0/binary", EVAL, ("finetune/r1",), Resources(gpus=1), "h",
                  {**attrs, "epoch": 0, "task": "binary", "eval_dataset": "census"}))
    plan = Plan("demo", str(tmp_path), str(tmp_path / "m.yaml"), "local", 1, {}, nodes)
    (tmp_path / "plan.json").write_text(dumps(plan))
    ev = tmp_path / "eval/r1/epoch_0/binary"
    ev.mkdir(parents=True)
    (ev / "task_config.yaml").write_text(f"data: {data}\nformat: instruct_json\nsplit: test\n")
    _eval_log(ev / "logs" / "2026-01-01T00-00-00_a.eval", [
        {"id": i, "epoch": 1, "scores": {"label_probability": {"value": p, "metadata": {"y": y}},
                                         "exact_match": {"value": "C"}}}
        for i, (_, p, y) in enumerate(SAMPLES)])
    # what it cost: the fine-tune ran 30 minutes on 2 GPUs, the eval 6 minutes on 1
    ft = tmp_path / "finetune/r1"
    ft.mkdir(parents=True)
    (ft / "record.jsonl").write_text('{"event": "start", "time": 100.0}\n{"event": "end", "time": 1900.0, "exit_code": 0}\n')
    (ft / "gpu_usage.csv").write_text("timestamp,index,utilization_gpu_pct,memory_used_mib,memory_total_mib\n"
                                      "2026/01/01 00:00:00.000, 0, 50, 1000, 81920\n"
                                      "2026/01/01 00:00:10.000, 0, 70, 3000, 81920\n"
                                      "2026/01/01 00:00:20.000, 0, [N/A], [N/A], 81920\n")
    for epoch, tokens, seconds in ((0, 1000, 10.0), (1, 3000, 30.0)):
        (ft / f"epoch_{epoch}").mkdir()
        (ft / f"epoch_{epoch}/record.json").write_text(json.dumps({"tokens": tokens, "train_seconds": seconds}))
    (ev / "record.jsonl").write_text('{"event": "start", "time": 0}\n{"event": "end", "time": 360, "exit_code": 0}\n')
    return tmp_path


def test_groups_match_a_hand_computation(plan_dir, tmp_path):
    from cruijff.results.report import build_report

    r = build_report(plan_dir, tmp_path / "out")
    g = pd.read_csv(r.tables["groups.csv"])
    by = {(row.field, row.group): row for row in g.itertuples()}
    f, m, everyone = by[("sex", "F")], by[("sex", "M")], by[("(all)", "(all)")]
    assert (f.n, m.n, everyone.n) == (3, 3, 6)
    assert f.accuracy == pytest.approx(2 / 3) and m.accuracy == pytest.approx(2 / 3)
    assert f.brier == pytest.approx((0.1 ** 2 + 0.4 ** 2 + 0.6 ** 2) / 3)
    assert m.brier == pytest.approx((0.2 ** 2 + 0.3 ** 2 + 0.7 ** 2) / 3)
    assert f.ece == pytest.approx((0.1 + 0.4 + 0.6) / 3)  # one sample per bin: |y - p| averaged
    assert f.auc == 1.0 and m.auc == 1.0
    assert everyone.auc == pytest.approx(7 / 9)  # positives 0.9, 0.7 beat all 3 negatives (0.4, 0.6, 0.2), 0.3 beats 1
    # Wilson 95% for 2 of 3, by hand: centre (p + z²/2n)/(1 + z²/n), half-width z·sqrt(p(1-p)/n + z²/4n²)/(1 + z²/n)
    z = 1.959963984540054
    denom = 1 + z * z / 3
    centre = (2 / 3 + z * z / 6) / denom
    half = z * math.sqrt((2 / 3) * (1 / 3) / 3 + z * z / 36) / denom
    assert (f.accuracy_low, f.accuracy_high) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert f.accuracy_low == pytest.approx(0.2077, abs=1e-4) and f.accuracy_high == pytest.approx(0.9385, abs=1e-4)
    assert f.brier_low <= f.brier <= f.brier_high
    # age has 6 distinct numbers: quartile bins, not 6 groups of one
    assert 2 <= len(g[g.field == "age"]) <= 4 and g[g.field == "age"].n.sum() == 6
    # deterministic: the same report twice gives the same numbers (bootstrap seed fixed)
    r2 = build_report(plan_dir, tmp_path / "out2")
    assert pd.read_csv(r2.tables["groups.csv"]).equals(g)
    assert (tmp_path / "out" / "plots" / "groups_binary_sex.png").stat().st_size > 5000
    assert "Scores by group" in r.html.read_text() and "Wilson" in r.html.read_text()


def test_best_possible_from_the_generators_metadata(plan_dir, tmp_path):
    from cruijff.results.report import build_report

    best = pd.read_csv(build_report(plan_dir, tmp_path / "out").tables["best_possible.csv"])
    assert len(best) == 1
    row = best.iloc[0]
    assert row.bayes_optimal_accuracy == 0.8 and row.accuracy == pytest.approx(4 / 6)
    assert row.gap == pytest.approx(0.8 - 4 / 6)


def test_cost_per_node_and_run(plan_dir, tmp_path):
    from cruijff.results.report import build_report

    r = build_report(plan_dir, tmp_path / "out")
    nodes = pd.read_csv(r.tables["cost.csv"]).set_index("node")
    ft = nodes.loc["finetune/r1"]
    assert ft.gpu_hours == pytest.approx(1.0)  # 1800 s x 2 GPUs
    assert (ft.gpu_samples, ft.mean_gpu_util_pct, ft.max_gpu_memory_mib) == (2, 60.0, 3000.0)
    assert (ft.tokens, ft.tokens_per_second) == (4000, pytest.approx(100.0))
    assert nodes.loc["eval/r1/epoch_0/binary"].gpu_hours == pytest.approx(0.1)
    runs = pd.read_csv(r.tables["cost_runs.csv"]).set_index("run")
    assert runs.loc["r1"].gpu_hours == pytest.approx(1.1) and runs.loc["r1"].jobs == 2
    assert runs.loc["r1"].train_tokens_per_second == pytest.approx(100.0)
    assert "What it cost" in r.html.read_text()


def test_wall_seconds_sums_attempts(tmp_path):
    from cruijff.results.report_cost import wall_seconds

    rec = tmp_path / "record.jsonl"
    rec.write_text('{"event": "start", "time": 0}\n{"event": "end", "time": 10}\n'
                   '{"event": "start", "time": 20}\n{"event": "end", "time": 25}\n{"event": "start", "time": 30}\n')
    assert wall_seconds(rec) == 15.0
    assert wall_seconds(tmp_path / "none.jsonl") is None


def test_rank_auc_equals_the_task_metric():
    import random

    from cruijff.results.report_groups import rank_auc
    from cruijff.tasks import _metrics

    rng = random.Random(3)
    for n in (2, 5, 40, 301):
        p = [round(rng.random(), 1) for _ in range(n)]  # rounded: many ties
        y = [rng.randint(0, 1) for _ in range(n)]
        expected = _metrics.auc(p, y)
        assert (math.isnan(expected) and math.isnan(rank_auc(p, y))) or rank_auc(p, y) == pytest.approx(expected)
    assert math.isnan(rank_auc([0.2, 0.3], [1, 1]))


def test_bootstrap_of_a_large_group_is_quick():
    import random
    import time

    from cruijff.results.report_groups import group_scores

    rng = random.Random(0)
    outcomes = [{"p": rng.random(), "y": rng.randint(0, 1), "correct": True} for _ in range(2000)]
    start = time.perf_counter()
    row = group_scores(outcomes)
    assert time.perf_counter() - start < 20
    assert row["auc_low"] <= row["auc"] <= row["auc_high"]


def test_vectorised_replicates_equal_the_task_metrics():
    import numpy as np

    from cruijff.results.report_groups import replicates
    from cruijff.tasks import _metrics

    rng = np.random.default_rng(1)
    p = np.round(rng.random(50), 2)
    p[:3] = [0.0, 1.0, 0.1]  # the bin edges
    y = rng.integers(0, 2, 50).astype(float)
    idx = rng.integers(0, 50, (7, 50))
    reps = replicates(p, y, idx)
    for i in range(7):
        assert reps["brier"][i] == pytest.approx(_metrics.brier(p[idx[i]], y[idx[i]]))
        assert reps["ece"][i] == pytest.approx(_metrics.ece(p[idx[i]], y[idx[i]]))
        assert reps["auc"][i] == pytest.approx(_metrics.auc(p[idx[i]], y[idx[i]]))


def test_cost_is_said_in_the_units_used():
    import pandas as pd

    from cruijff.results.report_cost import cost_sentence

    cpu = pd.DataFrame([{"gpus": 0, "wall_hours": 0.05, "gpu_hours": 0.0}, {"gpus": 0, "wall_hours": 0.1, "gpu_hours": 0.0}])
    text = cost_sentence(cpu)
    assert "9.0 min of wall time on 2 CPU-only jobs" in text and "GPU-hours" not in text
    mixed = pd.concat([cpu, pd.DataFrame([{"gpus": 2, "wall_hours": 1.5, "gpu_hours": 3.0}])])
    assert "3.000 GPU-hours on 1 GPU jobs" in cost_sentence(mixed)
