"""The report's scorer summaries (cruijff/results/scorer_summary.py), and that report.html carries them."""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path

from cruijff.plan import dumps
from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, Node, Plan, Resources
from cruijff.results.scorer_summary import summaries_html

pd = importlib.import_module("pandas")


def frame(rows):
    return pd.DataFrame(rows, columns=["node", "task", "run", "model", "epoch", "metric", "value"])


def test_each_scorer_gets_its_table_in_a_fixed_order():
    scores = frame([
        ("e/0", "age", "r", "m", 0, "continuous/parse_rate", 0.75),
        ("e/0", "age", "r", "m", 0, "continuous/mae", 4.125),
        ("e/0", "age", "r", "m", 0, "continuous/r2", float("nan")),
        ("b", "age", None, "m", None, "continuous/mae", 9.5),
        ("e/0", "risk", "r", "m", 0, "label_probability/floored", 3.0),
        ("e/0", "risk", "r", "m", 0, "label_probability/confidence_ece", 0.0625),
        ("e/0", "cap", "r", "m", 0, "exact_match/accuracy", 1.0),
    ])
    text = summaries_html(scores)
    assert "Numeric answers (continuous)" in text and "Label probabilities (label_probability)" in text
    assert "Stated risks" not in text and "exact_match" not in text
    assert "4.1250" in text and "9.5000" in text and "(base model)" in text and "0.0625" in text
    assert text.index(">mae<") < text.index(">r2<") < text.index(">parse_rate<")
    assert summaries_html(frame([("e", "cap", "r", "m", 0, "exact_match/accuracy", 1.0)])) == ""
    assert summaries_html(frame([])) == ""


def test_report_html_has_the_numeric_summary(tmp_path):
    from cruijff.results.report import build_report

    res = Resources()
    attrs = {"run": "r", "model": "m", "dataset": "d", "grid": {}, "hyperparameters": {"lr": 1e-4}}
    nodes = (Node("finetune/r", FINETUNE, (), res, "h", {**attrs, "save_epochs": [0]}),
             Node("eval/r/epoch_0/age", EVAL, ("finetune/r",), res, "h",
                  {**attrs, "epoch": 0, "task": "age", "eval_dataset": "d"}),
             Node("base_eval/m/d/age", BASE_EVAL, (), res, "h",
                  {"model": "m", "dataset": "d", "eval_dataset": "d", "task": "age"}))
    (tmp_path / "plan.json").write_text(dumps(Plan("x", str(tmp_path), str(tmp_path / "m.yaml"), "local", 1, {}, nodes)))
    for node, mae in (("eval/r/epoch_0/age", 2.5), ("base_eval/m/d/age", 11.25)):
        header = {"version": 2, "status": "success", "eval": {"task": "age", "model": "hf/local"},
                  "results": {"total_samples": 4, "completed_samples": 4, "scores": [
                      {"name": "continuous", "metrics": {k: {"name": k, "value": v} for k, v in
                                                         {"mae": mae, "rmse": 3.0, "parse_rate": 1.0}.items()}}]}}
        log = Path(tmp_path / node / "logs" / "2026-01-01T00-00-00_a.eval")
        log.parent.mkdir(parents=True)
        with zipfile.ZipFile(log, "w") as zf:
            zf.writestr("header.json", json.dumps(header))
    text = build_report(tmp_path, tmp_path / "out").html.read_text()
    section = text[text.index("Scorer summaries"):text.index("All scores")]
    assert "Numeric answers" in section and "2.5000" in section and "11.2500" in section
