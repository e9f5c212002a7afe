"""`cruijff report`: every eval score and training loss of a plan, as tidy tables, plots and one HTML page.

Inputs (all optional per node, a missing log is simply absent from the tables):
- `<plan>/plan.json`: eval nodes (attrs run, model, dataset, epoch, task, hyperparameters, grid) and
  base_eval nodes (attrs model, dataset, task);
- `<plan>/<node id>/logs/`: inspect logs, read with cruijff.results.scores (the latest successful one);
- `<plan>/finetune/<run>/logs/metrics.jsonl`: training events with step, epoch, train_loss / val_loss.

Outputs under `--out` (default `<plan>/report/`): scores.csv + scores.parquet (one row per node and
metric), losses.csv + losses.parquet (one row per logged loss), plots/*.png and report.html.
pandas, pyarrow and matplotlib are imported inside the functions (cruijff[eval]).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cruijff.plan import load_plan
from cruijff.errors import CruijffError
from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, Plan
from cruijff.results.scorer_summary import summaries_html
from cruijff.results.scores import EvalScore, read_scores

BASE_EPOCH = -1  # where the untuned base model sits on an epoch axis
FIXED_COLUMNS = ["node", "kind", "run", "model", "dataset", "eval_dataset", "epoch", "task"]
SCORE_TAIL = ["metric", "value", "samples", "log"]
LOSS_COLUMNS = ["run", "model", "dataset", "split", "step", "epoch", "loss"]


class ReportError(CruijffError):
    """The report cannot be built (missing libraries, unwritable output)."""


@dataclass
class Report:
    out_dir: Path
    tables: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    html: Path | None = None
    evals_total: int = 0
    evals_scored: int = 0
    missing: list[str] = field(default_factory=list)  # eval node ids with no successful log
    sections: list[str] = field(default_factory=list)  # HTML of the extra sections (cost, groups)


# ---- collecting ------------------------------------------------------------------------------

def _best_log(scores: list[EvalScore]) -> EvalScore | None:
    """The latest successful log; a retried eval leaves earlier failures behind."""
    for s in reversed(scores):
        if s.status == "success":
            return s
    return None


def _cell(value: Any) -> Any:
    """Lists and dicts (e.g. lora target modules) become JSON text so the table stays flat."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def hyperparameter_names(plan: Plan) -> list[str]:
    names: list[str] = []
    for n in plan.nodes:
        if n.kind == EVAL:
            for k in n.attrs.get("hyperparameters") or {}:
                if k not in names:
                    names.append(k)
    return names


def varied_hyperparameters(plan: Plan) -> list[str]:
    """Hyperparameters that take more than one value across the plan's eval nodes (the grid's axes)."""
    values: dict[str, set] = {}
    for n in plan.nodes:
        if n.kind == EVAL:
            for k, v in (n.attrs.get("hyperparameters") or {}).items():
                values.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    return [k for k, vs in values.items() if len(vs) > 1]


def _hp_column(name: str) -> str:
    return f"hp_{name}" if name in FIXED_COLUMNS + SCORE_TAIL + ["split", "step", "loss"] else name


def score_rows(plan: Plan, root: Path) -> tuple[list[dict[str, Any]], int, list[str]]:
    """One dict per (eval node, metric); also the number of eval nodes and those without scores."""
    hp_names = hyperparameter_names(plan)
    rows, total, missing = [], 0, []
    for n in plan.nodes:
        if n.kind not in (EVAL, BASE_EVAL):
            continue
        total += 1
        log = _best_log(read_scores(root / n.id / "logs"))
        if log is None:
            missing.append(n.id)
            continue
        a = n.attrs
        base = {
            "node": n.id, "kind": n.kind, "run": a.get("run"), "model": a.get("model"),
            "dataset": a.get("dataset"), "eval_dataset": a.get("eval_dataset", a.get("dataset")),
            "epoch": a.get("epoch", BASE_EPOCH) if n.kind == EVAL else BASE_EPOCH, "task": a.get("task"),
        }
        hps = a.get("hyperparameters") or {}
        for name in hp_names:
            base[_hp_column(name)] = _cell(hps.get(name)) if n.kind == EVAL else None
        for metric, value in log.metrics.items():
            rows.append({**base, "metric": metric, "value": value, "samples": log.samples, "log": log.path})
    return rows, total, missing


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a killed job can leave a torn last line
        if isinstance(event, dict):
            events.append(event)
    return events


def loss_rows(plan: Plan, root: Path) -> list[dict[str, Any]]:
    rows = []
    for n in plan.nodes:
        if n.kind != FINETUNE:
            continue
        path = root / n.id / "logs" / "metrics.jsonl"
        if not path.is_file():
            continue
        for e in _read_jsonl(path):
            for split in ("train", "val"):
                loss = e.get(f"{split}_loss")  # null (or NaN, in older files) when not finite
                if isinstance(loss, (int, float)) and math.isfinite(loss) and e.get("step") is not None:
                    rows.append({"run": n.attrs.get("run"), "model": n.attrs.get("model"),
                                 "dataset": n.attrs.get("dataset"), "split": split, "step": e["step"],
                                 "epoch": e.get("epoch"), "loss": float(loss)})
    return rows


# ---- tables ----------------------------------------------------------------------------------

def _frames(plan: Plan, root: Path):
    try:
        import pandas as pd
    except ImportError:
        raise ReportError("cruijff report needs pandas", hint="pip install 'cruijff[eval]'") from None
    rows, total, missing = score_rows(plan, root)
    hp_cols = [_hp_column(h) for h in hyperparameter_names(plan)]
    scores = pd.DataFrame(rows, columns=FIXED_COLUMNS + hp_cols + SCORE_TAIL)
    scores["epoch"] = scores["epoch"].astype("Int64")
    scores["value"] = scores["value"].astype(float)
    for col in hp_cols + ["samples"]:  # base-model rows have no hyperparameters: keep ints ints
        if _all_ints(row.get(col) for row in rows):
            scores[col] = scores[col].astype("Int64")
    losses = pd.DataFrame(loss_rows(plan, root), columns=LOSS_COLUMNS)
    return scores, losses, total, missing


def _all_ints(column) -> bool:
    """Whether a column's values (as read, before pandas turns int + None into float) are ints."""
    values = [v for v in column if v is not None]
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def scoreboard(scores):
    """One row per (task, run, epoch) that has scores, one column per metric; base models as
    run "<model> (base model)" at epoch "base". Only rows that exist: no empty combinations."""
    import pandas as pd

    keyed = scores.assign(
        run=[r if k == EVAL else f"{m} (base model)" for r, k, m in zip(scores["run"], scores["kind"], scores["model"])],
        epoch=["base" if k != EVAL else str(e) for e, k in zip(scores["epoch"], scores["kind"])],
    )
    keys = ["task", "run", "model", "epoch"]
    values = keyed.set_index(keys + ["metric"])["value"]
    board = values[~values.index.duplicated(keep="first")].unstack("metric")
    rows = keyed[keys].drop_duplicates()
    board = board.reindex(pd.MultiIndex.from_frame(rows))  # the plan's order, not unstack's sorted one
    return board[list(dict.fromkeys(keyed["metric"]))]


def score_text(value) -> str:
    """Scores with 4 decimals; a small nonzero one (a loss, a stderr) in 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    v = float(value)
    return f"{v:.3g}" if v and abs(v) < 1e-3 else f"{v:.4f}"


def setting_text(value) -> str:
    """A setting as the manifest wrote it: 3e-05, 0.001, 4 (never 0.0000 or 4.0)."""
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
    return str(value)


def _write_tables(scores, losses, out: Path) -> dict[str, Path]:
    paths = {}
    for name, df in (("scores", scores), ("losses", losses)):
        csv = out / f"{name}.csv"
        df.to_csv(csv, index=False)
        paths[f"{name}.csv"] = csv
        pq = out / f"{name}.parquet"
        try:
            # Object columns mixing numbers and None/text are written as text, which parquet accepts.
            safe = df.copy()
            for col in safe.columns:
                if safe[col].dtype == object:
                    kinds = {type(v) for v in safe[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
                    if len(kinds) > 1:
                        safe[col] = safe[col].map(lambda v: None if v is None else str(v))
            safe.to_parquet(pq, index=False)
        except ImportError:
            raise ReportError("writing Parquet needs pyarrow", hint="pip install 'cruijff[eval]'") from None
        paths[f"{name}.parquet"] = pq
    return paths


# ---- plots -----------------------------------------------------------------------------------

def _headline_metric(scores, task: str) -> str | None:
    """The metric shown for a task: the logs' first metric (inspect's headline), most common wins."""
    sub = scores[scores["task"] == task]
    if sub.empty:
        return None
    firsts = sub.groupby("node", sort=False)["metric"].first()
    return Counter(firsts).most_common(1)[0][0]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _numeric(values) -> bool:
    try:
        [float(v) for v in values]
        return True
    except (TypeError, ValueError):
        return False


def _plot_scores_by_hp(scores, plan: Plan, plots: Path, plt) -> list[Path]:
    """Per task: one panel per (metric, varied hyperparameter); each run at its last evaluated epoch.

    Dots are single runs; where other hyperparameters vary too, several runs share an x and the
    line is their mean, which the panel says (an unlabelled mean hides the other axes).
    """
    out = []
    hps = varied_hyperparameters(plan)
    if not hps:
        return out
    for task in sorted(scores["task"].dropna().unique()):
        sub = scores[scores["task"] == task]
        tuned = sub[sub["kind"] == EVAL]
        if tuned.empty:
            continue
        metrics = list(dict.fromkeys(sub["metric"]))
        # each run at its last evaluated epoch
        last_epoch = tuned.groupby("run")["epoch"].transform("max")
        last = tuned[tuned["epoch"] == last_epoch]
        base = sub[sub["kind"] == BASE_EVAL]
        fig, axes = plt.subplots(len(metrics), len(hps), figsize=(max(6.5, 4.5 * len(hps)), 0.8 + 3.2 * len(metrics)),
                                 squeeze=False)
        for r, metric in enumerate(metrics):
            rows = last[last["metric"] == metric]
            for c, hp in enumerate(hps):
                ax = axes[r][c]
                averaged = _plot_hp_panel(ax, rows, base[base["metric"] == metric], hp)
                others = [h for h in hps if h != hp]
                ax.set_title(f"mean over {', '.join(others)}" if averaged else "one run per point", fontsize=8)
                ax.set_xlabel(hp)
                ax.set_ylabel(metric)
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{task}: every metric by hyperparameter\neach run at its last evaluated epoch; "
                     "dashed: base model\ndots: single runs; line: the mean of the runs at each value",
                     fontsize=9)
        fig.tight_layout()
        path = plots / f"score_by_hyperparameter_{_safe(task)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


def _plot_hp_panel(ax, rows, base, hp: str) -> bool:
    """Draw one panel; True when some x held more than one run (the line is a mean)."""
    col = _hp_column(hp)
    averaged = False
    for i, (model, grp) in enumerate(rows.groupby("model")):
        color = f"C{i}"
        xs = list(grp[col])
        numeric = _numeric(xs)
        grp = grp.assign(x=[float(x) for x in xs] if numeric else [str(x) for x in xs])
        counts = grp.groupby("x")["value"].count()
        averaged = averaged or bool((counts > 1).any())
        agg = grp.groupby("x")["value"].mean()
        if numeric:
            agg = agg.sort_index()
        ax.plot(list(grp["x"]), list(grp["value"]), "o", color=color, alpha=0.35, markersize=4)
        ax.plot(list(agg.index), agg.values, "o-" if numeric else "s", color=color, label=model)
        if numeric and len(agg) > 1 and min(agg.index) > 0 and max(agg.index) / min(agg.index) >= 10:
            ax.set_xscale("log")
        if numeric and len(agg) <= 12:  # ticks at the grid's values, written as in the manifest
            ax.set_xticks(list(agg.index), [setting_text(v) for v in agg.index])
            ax.minorticks_off()
        for v in base[base["model"] == model]["value"]:
            ax.axhline(v, color=color, linestyle="--", linewidth=1, label=f"{model} (base)")
    return averaged


def _plot_scores_by_epoch(scores, plots: Path, plt) -> list[Path]:
    from matplotlib.ticker import MaxNLocator

    out = []
    for task in sorted(scores["task"].dropna().unique()):
        metric = _headline_metric(scores, task)
        sub = scores[(scores["task"] == task) & (scores["metric"] == metric)]
        tuned, base = sub[sub["kind"] == EVAL], sub[sub["kind"] == BASE_EVAL]
        if tuned.empty and base.empty:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4))
        models = sorted(set(sub["model"].dropna()))
        for run, grp in tuned.groupby("run"):
            grp = grp.sort_values("epoch")
            model = grp["model"].iloc[0]
            xs, ys = list(grp["epoch"].astype(int)), list(grp["value"])
            b = base[base["model"] == model]
            if not b.empty:  # start each run's line at its base model
                xs, ys = [BASE_EPOCH] + xs, [float(b["value"].iloc[0])] + ys
            ax.plot(xs, ys, "o-", label=run, linewidth=1)
        for model in models:
            for v in base[base["model"] == model]["value"]:
                ax.axhline(v, color="grey", linestyle="--", linewidth=1)
                ax.annotate(f"base {model}", (BASE_EPOCH, v), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (-1 = base model)")
        ax.set_ylabel(metric)
        ax.set_title(f"{task}: {metric} by epoch", fontsize=9)
        ax.grid(alpha=0.3)
        if not tuned.empty:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = plots / f"score_by_epoch_{_safe(task)}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    return out


def _plot_losses(losses, plots: Path, plt) -> list[Path]:
    if losses.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (run, grp) in enumerate(losses.groupby("run")):
        color = f"C{i % 10}"
        train = grp[grp["split"] == "train"].sort_values("step")
        val = grp[grp["split"] == "val"].sort_values("step")
        if not train.empty:
            ax.plot(train["step"], train["loss"], "-", color=color, linewidth=1, label=f"{run} train")
        if not val.empty:
            ax.plot(val["step"], val["loss"], "o--", color=color, linewidth=1, label=f"{run} val")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("training (solid) and validation (dashed) loss", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = plots / "losses.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _plots(scores, losses, plan: Plan, out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("cruijff report needs matplotlib", hint="pip install 'cruijff[eval]'") from None
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    paths = []
    if not scores.empty:
        paths += _plot_scores_by_hp(scores, plan, plots, plt)
        paths += _plot_scores_by_epoch(scores, plots, plt)
    paths += _plot_losses(losses, plots, plt)
    return paths


# ---- HTML ------------------------------------------------------------------------------------

def _html(plan: Plan, scores, report: Report) -> str:
    imgs = "\n".join(
        f'<figure><img alt="{html.escape(p.name)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{html.escape(p.name)}</figcaption></figure>'
        for p in report.plots
    )
    if scores.empty:
        table = "<p>No evaluation has a successful log yet.</p>"
        board = ""
    else:
        board = "<h2>Scoreboard</h2>" + scoreboard(scores).to_html(float_format=score_text, na_rep="")
        shown = scores.drop(columns=["log"])
        settings = {c: setting_text for c in shown.columns if c not in ("value", "metric")}
        table = shown.to_html(index=False, formatters={**settings, "value": score_text}, na_rep="")
    missing = "".join(f"<li>{html.escape(m)}</li>" for m in report.missing)
    title = html.escape(f"cruijff report: {plan.experiment}")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; text-align: right; }}
figure {{ display: inline-block; margin: 0.5em; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{title}</h1>
<p>{report.evals_scored} of {report.evals_total} evaluations scored. Plan: {html.escape(str(plan.output_dir))}</p>
{f"<details><summary>{len(report.missing)} without a successful log</summary><ul>{missing}</ul></details>" if missing else ""}
<h2>Plots</h2>
{imgs or "<p>Nothing to plot yet.</p>"}
{board}
{"".join(report.sections)}
{summaries_html(scores)}
<h2>All scores</h2>
{table}
</body></html>
"""


def build_report(plan_dir: str | Path, out: str | Path | None = None) -> Report:
    """Collect a plan's scores and losses; write tables, plots and report.html under out."""
    root = Path(plan_dir)
    plan = load_plan(root)
    out_dir = Path(out) if out else root / "report"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"{out_dir}: cannot create the report directory ({e.strerror})",
                          hint="pass a writable --out DIR") from None
    scores, losses, total, missing = _frames(plan, root)
    report = Report(out_dir=out_dir, evals_total=total, evals_scored=total - len(missing), missing=missing)
    report.tables = _write_tables(scores, losses, out_dir)
    report.plots = _plots(scores, losses, plan, out_dir)
    from cruijff.results import report_cost, report_groups  # research-kit sections (own modules)

    for extra in (report_groups, report_cost):
        tables, plots, section = extra.write_sections(plan, root, out_dir)
        report.tables.update(tables)
        report.plots += plots
        report.sections.append(section)
    report.html = out_dir / "report.html"
    report.html.write_text(_html(plan, scores, report), encoding="utf-8")
    return report
