"""cruijff report on a synthetic plan directory with fake inspect logs and training metrics."""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path

import pytest

from cruijff.plan import dumps
from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, Node, Plan, Resources

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
    from cruijff.results.report import build_report

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
    from cruijff.results.report import build_report

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
    from cruijff.results.report import build_report

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
    from cruijff.results.report import build_report

    with pytest.raises(CruijffError, match="no plan.json"):
        build_report(tmp_path)


# ---- a two-axis grid (issue 12.8): no phantom rows, settings printed as written, labelled means ----

GRID_LRS, GRID_RANKS = (1e-5, 3e-5, 1e-4), (4, 8)


@pytest.fixture
def grid_plan_dir(tmp_path) -> Path:
    """lr × lora_rank, 2 epochs each, two metrics, and the base model."""
    nodes, res = [], Resources()
    for lr in GRID_LRS:
        for rank in GRID_RANKS:
            run = f"lr{lr:g}_r{rank}"
            attrs = {"run": run, "model": "tiny", "dataset": "words", "grid": {"lr": lr, "lora_rank": rank},
                     "hyperparameters": {"lr": lr, "lora_rank": rank, "epochs": 2}}
            nodes.append(Node(f"finetune/{run}", FINETUNE, (), res, "h", attrs))
            for epoch in (0, 1):
                node_id = f"eval/{run}/epoch_{epoch}/capitalization"
                nodes.append(Node(node_id, EVAL, (f"finetune/{run}",), res, "h",
                                  {**attrs, "epoch": epoch, "task": "capitalization", "eval_dataset": "words"}))
                acc = 0.2 + 2000 * lr + 0.02 * rank + 0.1 * epoch
                _log(tmp_path / node_id / "logs" / "2026-01-02T00-00-00_b.eval", "success", acc, acc / 2)
    nodes.append(Node("base_eval/tiny/words/capitalization", BASE_EVAL, (), res, "h",
                      {"model": "tiny", "dataset": "words", "eval_dataset": "words", "task": "capitalization"}))
    _log(tmp_path / "base_eval/tiny/words/capitalization/logs/2026-01-02T00-00-00_b.eval", "success", 0.1, 0.05)
    plan = Plan("grid", str(tmp_path), str(tmp_path / "m.yaml"), "local", 1, {}, tuple(nodes))
    (tmp_path / "plan.json").write_text(dumps(plan))
    return tmp_path


def test_scoreboard_has_only_real_rows(grid_plan_dir, tmp_path):
    """pivot_table(dropna=False) added an empty epoch -1 row per run and a run "nan" per base model."""
    from cruijff.results.report import frames, scoreboard
    from cruijff.plan import load_plan

    scores, _, _, _ = frames(load_plan(grid_plan_dir), grid_plan_dir)
    board = scoreboard(scores)
    assert len(board) == len(GRID_LRS) * len(GRID_RANKS) * 2 + 1  # one row per scored (run, epoch) and the base
    assert not board.isna().any().any(), "a scoreboard row without scores"
    runs = [idx[1] for idx in board.index]
    assert "nan" not in map(str, runs) and "tiny (base model)" in runs
    assert [idx[3] for idx in board.index if idx[1] == "tiny (base model)"] == ["base"]
    assert {idx[3] for idx in board.index if idx[1] != "tiny (base model)"} == {"0", "1"}
    assert list(board.columns) == ["exact_match/accuracy", "includes/accuracy"]
    assert board.loc[("capitalization", "lr3e-05_r4", "tiny", "1"), "exact_match/accuracy"] == pytest.approx(
        0.2 + 2000 * 3e-5 + 0.08 + 0.1)


def test_settings_keep_their_written_form(grid_plan_dir, tmp_path):
    """lr 3e-5 was printed 0.0000 (every float %.4f) and lora_rank 4 as 4.0."""
    from cruijff.results.report import build_report, score_text, setting_text

    r = build_report(grid_plan_dir, tmp_path / "out")
    csv = pd.read_csv(r.tables["scores.csv"], dtype=str, keep_default_na=False)
    tuned = csv[csv["kind"] == EVAL]
    assert set(tuned["lora_rank"]) == {"4", "8"} and set(tuned["epochs"]) == {"2"}
    assert set(tuned["lr"]) == {"1e-05", "3e-05", "0.0001"}
    assert str(pd.read_parquet(r.tables["scores.parquet"])["lora_rank"].dtype) == "Int64"
    page = r.html.read_text()
    assert "<td>3e-05</td>" in page and "<td>4</td>" in page
    assert "4.0" not in page and "0.0000" not in page
    assert (setting_text(3e-5), setting_text(4.0), setting_text(None), setting_text(0.001)) == ("3e-05", "4", "", "0.001")
    assert (score_text(0.5), score_text(0.0), score_text(2e-5), score_text(float("nan"))) == ("0.5000", "0.0000", "2e-05", "")


def test_hyperparameter_plot_shows_every_metric_and_says_it_averages(grid_plan_dir, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cruijff.results.report import build_report

    drawn = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, path, **kw: (drawn.append((Path(path).name, fig)), save(fig, path, **kw))[1])
    build_report(grid_plan_dir, tmp_path / "out")
    fig = dict(drawn)["score_by_hyperparameter_capitalization.png"]
    panels = [(ax.get_ylabel(), ax.get_xlabel(), ax.get_title()) for ax in fig.axes]
    assert panels == [("exact_match/accuracy", "lr", "mean over lora_rank"),
                      ("exact_match/accuracy", "lora_rank", "mean over lr"),
                      ("includes/accuracy", "lr", "mean over lora_rank"),
                      ("includes/accuracy", "lora_rank", "mean over lr")]
    # the lr panel's line is the mean over both ranks at the last epoch
    line = [ln for ln in fig.axes[0].lines if ln.get_label() == "tiny"][0]
    assert list(line.get_xdata()) == list(GRID_LRS)
    expected = [0.2 + 2000 * lr + 0.02 * 6 + 0.1 for lr in GRID_LRS]
    assert list(line.get_ydata()) == pytest.approx(expected)
    plt.close("all")
