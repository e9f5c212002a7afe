"""cruijff report on a synthetic plan directory with fake inspect logs and training metrics."""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path

import pytest

from cruijff.artifact import dumps
from cruijff.model import BASE_EVAL, EVAL, FINETUNE, Node, Plan, Resources

pd = importlib.import_module("pandas")
importlib.import_module("matplotlib")
importlib.import_module("pyarrow")

HP = {"lr": None, "lora_rank": 8, "epochs": 2, "lora_attn_modules": ["q_proj", "v_proj"]}
RUNS = {"lr1e-4": 1e-4, "lr1e-3": 1e-3}
# (node id) -> (exact_match/accuracy, includes/accuracy)
SCORES = {
    "eval/lr1e-4/epoch_0/capitalization": (0.25, 0.5),
    "eval/lr1e-4/epoch_1/capitalization": (0.5, 0.75),
    "eval/lr1e-3/epoch_0/capitalization": (0.625, 0.75),
    # eval/lr1e-3/epoch_1/capitalization: no log (still running)
    "base_eval/tiny/words/capitalization": (0.125, 0.25),
}


def _log(path: Path, status: str, acc: float = 0.0, inc: float = 0.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"version": 2, "status": status,
              "eval": {"task": "capitalization", "model": "hf/local", "created": "2026-01-01T00:00:00+00:00"},
              "stats": {"started_at": "2026-01-01T00:00:00+00:00", "completed_at": "2026-01-01T00:01:00+00:00"}}
    if status == "success":
        header["results"] = {"total_samples": 8, "completed_samples": 8, "scores": [
            {"name": "exact_match", "metrics": {"accuracy": {"name": "accuracy", "value": acc}}},
            {"name": "includes", "metrics": {"accuracy": {"name": "accuracy", "value": inc}}}]}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.json", json.dumps(header))


@pytest.fixture
def plan_dir(tmp_path) -> Path:
    nodes = []
    res = Resources()
    for run, lr in RUNS.items():
        hp = {**HP, "lr": lr}
        attrs = {"run": run, "model": "tiny", "dataset": "words", "grid": {"lr": lr}, "hyperparameters": hp}
        nodes.append(Node(f"finetune/{run}", FINETUNE, (), res, "h", {**attrs, "save_epochs": [0, 1]}))
        for epoch in (0, 1):
            nodes.append(Node(f"eval/{run}/epoch_{epoch}/capitalization", EVAL, (f"finetune/{run}",), res, "h",
                              {**attrs, "epoch": epoch, "task": "capitalization", "eval_dataset": "words"}))
        steps = [{"type": "train", "step": s, "epoch": (s - 1) // 2, "train_loss": 3.0 / s} for s in range(1, 5)]
        steps += [{"type": "val", "step": 2, "epoch": 0, "val_loss": 2.5}, {"type": "val", "step": 4, "epoch": 1, "val_loss": 2.0}]
        metrics = tmp_path / "finetune" / run / "logs" / "metrics.jsonl"
        metrics.parent.mkdir(parents=True)
        metrics.write_text("".join(json.dumps(e) + "\n" for e in steps) + '{"type": "tra')  # torn last line
    nodes.append(Node("base_eval/tiny/words/capitalization", BASE_EVAL, (), res, "h",
                      {"model": "tiny", "dataset": "words", "eval_dataset": "words", "task": "capitalization"}))
    plan = Plan("demo", str(tmp_path), str(tmp_path / "m.yaml"), "local", 1, {}, tuple(nodes))
    (tmp_path / "plan.json").write_text(dumps(plan))
    for node_id, (acc, inc) in SCORES.items():
        logs = tmp_path / node_id / "logs"
        _log(logs / "2026-01-01T00-00-00_a.eval", "error")  # an earlier failed attempt
        _log(logs / "2026-01-02T00-00-00_b.eval", "success", acc, inc)
    _log(tmp_path / "eval/lr1e-3/epoch_1/capitalization/logs/2026-01-01T00-00-00_a.eval", "error")
    return tmp_path


def test_tables_hold_exactly_the_logs_numbers(plan_dir, tmp_path):
    from cruijff.report import build_report

    r = build_report(plan_dir, tmp_path / "out")
    assert r.evals_total == 5 and r.evals_scored == 4
    assert r.missing == ["eval/lr1e-3/epoch_1/capitalization"]
    scores = pd.read_csv(r.tables["scores.csv"])
    assert len(scores) == 2 * len(SCORES)  # one row per (node, metric)
    for node_id, (acc, inc) in SCORES.items():
        rows = scores[scores["node"] == node_id].set_index("metric")["value"]
        assert rows["exact_match/accuracy"] == acc and rows["includes/accuracy"] == inc
    row = scores[scores["node"] == "eval/lr1e-3/epoch_0/capitalization"].iloc[0]
    assert (row["run"], row["model"], row["dataset"], row["epoch"], row["task"]) == ("lr1e-3", "tiny", "words", 0, "capitalization")
    assert row["lr"] == 1e-3 and row["lora_rank"] == 8 and row["epochs"] == 2
    assert json.loads(row["lora_attn_modules"]) == ["q_proj", "v_proj"]
    base = scores[scores["kind"] == BASE_EVAL].iloc[0]
    assert base["epoch"] == -1 and pd.isna(base["lr"]) and pd.isna(base["run"])
    parquet = pd.read_parquet(r.tables["scores.parquet"])
    assert sorted(parquet["value"]) == sorted(scores["value"])
    assert list(parquet.columns) == list(scores.columns)


def test_losses_table_and_outputs(plan_dir, tmp_path):
    from cruijff.report import build_report

    r = build_report(plan_dir)  # default: <plan>/report
    assert r.out_dir == plan_dir / "report"
    losses = pd.read_csv(r.tables["losses.csv"])
    assert len(losses) == 2 * (4 + 2)  # the torn line is skipped
    run = losses[(losses["run"] == "lr1e-4") & (losses["split"] == "train")].sort_values("step")
    assert list(run["loss"]) == pytest.approx([3.0, 1.5, 1.0, 0.75])
    assert set(losses[losses["split"] == "val"]["loss"]) == {2.5, 2.0}
    names = sorted(p.name for p in r.plots)
    assert names == ["losses.png", "score_by_epoch_capitalization.png", "score_by_hyperparameter_capitalization.png"]
    for p in r.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = r.html.read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "eval/lr1e-3/epoch_1/capitalization" in page  # listed as missing
    assert "0.6250" in page  # a score, in the table
    assert "<img" in page and 'src="plots/' not in page  # self-contained


def test_empty_plan_without_logs_or_metrics(tmp_path):
    from cruijff.report import build_report

    plan = Plan("empty", str(tmp_path), "m.yaml", "local", 1, {}, (
        Node("finetune/r", FINETUNE, (), Resources(), "h", {"run": "r", "model": "m", "dataset": "d", "hyperparameters": {"lr": 1}}),
        Node("eval/r/epoch_0/t", EVAL, ("finetune/r",), Resources(), "h",
             {"run": "r", "model": "m", "dataset": "d", "epoch": 0, "task": "t", "hyperparameters": {"lr": 1}}),
    ))
    (tmp_path / "plan.json").write_text(dumps(plan))
    r = build_report(tmp_path)
    assert r.evals_scored == 0 and r.plots == []
    assert pd.read_csv(r.tables["scores.csv"]).empty
    assert "No evaluation has a successful log yet" in r.html.read_text()


def test_cli_report(plan_dir, tmp_path):
    from click.testing import CliRunner

    from cruijff.cli import cli

    result = CliRunner().invoke(cli, ["report", str(plan_dir), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "4/5 evaluations scored" in result.output
    assert (tmp_path / "r" / "report.html").is_file()


def test_not_a_plan_dir_is_a_clear_error(tmp_path):
    from cruijff.errors import CruijffError
    from cruijff.report import build_report

    with pytest.raises(CruijffError, match="no plan.json"):
        build_report(tmp_path)
