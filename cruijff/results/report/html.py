"""The report's one HTML page: a headline table (run x task: score [CI], difference vs base [CI],
Holm-corrected p), captioned plots, the comparisons, the extra sections, and wide details collapsed.

Self-contained (plots inlined as base64 PNG); missing values print as "—"; sized for a 1400-pixel
window (wide tables scroll inside their own box, never the page).
"""

from __future__ import annotations

import base64
import html
import math
import re
import shlex

from cruijff.plan import BASE_EVAL, CHECKPOINT_EVAL, EVAL, Plan
from cruijff.results.report.collect import Report
from cruijff.results.report.tables import score_text, scoreboard, setting_text
from cruijff.results.scorer_summary import summaries_html

DASH = "—"
CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1320px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 13px; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; white-space: nowrap; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; white-space: normal; }
tr.base td { background: #f7f7ee; font-style: italic; }
.scroll { max-width: 100%; overflow-x: auto; }
figure { display: inline-block; margin: 0.5em; max-width: 640px; vertical-align: top; }
figure img { max-width: 100%; } figcaption { font-size: 12px; color: #444; }
.note { font-size: 12px; color: #555; max-width: 1000px; }
code { background: #f4f4f4; padding: 1px 4px; font-size: 12px; word-break: break-all; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: 600; }
"""

CAPTIONS = {
    "score_by_epoch": "{task}: {metric} after each epoch of every run; the dashed grey line is the base model "
                      "(not fine-tuned), for reference.",
    "score_by_hyperparameter": "{task}: every score (not its stderr) against each hyperparameter the grid varies, every "
                               "run at its last evaluated epoch; dashed lines are the base models.",
    "losses": "Training (solid) and validation (dashed) loss of every fine-tune, by optimizer step.",
    "groups": "{task}: scores by {field}, with 95% intervals (accuracy: Wilson; Brier: bootstrap).",
}


def esc(v) -> str:
    return html.escape(str(v))


def _missing(v) -> bool:
    """None, NaN or pandas' NA."""
    import pandas as pd

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # a list-like value
        return False


def num(v, digits: int = 3) -> str:
    return DASH if _missing(v) else f"{float(v):.{digits}f}"


def p_text(p) -> str:
    if _missing(p):
        return DASH
    return "&lt; 0.001" if p < 0.001 else f"{p:.3f}"


def caption(path, tasks, metrics) -> str:
    """A plot's caption from its file name's kind and task."""
    stem = path.stem
    for prefix, text in CAPTIONS.items():
        if stem.startswith(prefix):
            rest = stem[len(prefix) + 1:]
            task = next((t for t in sorted(tasks, key=len, reverse=True) if rest.startswith(_safe(t))), rest)
            fieldname = rest[len(_safe(task)) + 1:] if rest.startswith(_safe(task)) else ""
            return text.format(task=task, metric=metrics.get(task, "score"), field=fieldname)
    return stem.replace("_", " ")


def _safe(name) -> str:
    from cruijff.results.report.plots import safe_name

    return safe_name(name)


def figures(report: Report, tasks, metrics) -> str:
    return "\n".join(
        f'<figure><img alt="{esc(caption(p, tasks, metrics))}" src="data:image/png;base64,'
        f'{base64.b64encode(p.read_bytes()).decode()}"><figcaption>{esc(caption(p, tasks, metrics))}</figcaption></figure>'
        for p in report.plots)


def headline(scores, items, comps, metrics: dict[str, str]) -> str:
    """Rows: base models first (the reference), then each run (or seed-replicated setting) at its last
    evaluated epoch; per task: score [95% CI], difference vs base [95% CI], Holm-corrected p."""
    from cruijff.results import paired
    from cruijff.results.report_groups import wilson

    tasks = list(metrics)
    by_node_item: dict[tuple, list[float]] = {}
    for r in items:
        if not math.isnan(r["value"]):
            by_node_item.setdefault((r["node"], r["metric"]), []).append(r["value"])

    def score_cell(nodes, task):
        metric = metrics[task]
        vals = [scores[(scores["node"] == n) & (scores["metric"] == metric)]["value"] for n in nodes]
        vals = [float(v.iloc[0]) for v in vals if len(v)]
        if not vals:
            return DASH
        if len(vals) > 1:
            mean, sd, lo, hi = paired.t_interval(vals)
            return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]<br><small>sd {sd:.3f}, {len(vals)} seeds</small>"
        item_vals = by_node_item.get((nodes[0], metric))
        if not item_vals:
            return f"{vals[0]:.3f}"
        if paired.is_binary(item_vals):
            lo, hi = wilson(int(sum(item_vals)), len(item_vals))
        else:
            lo, hi = paired.bootstrap_mean(item_vals)
        return f"{vals[0]:.3f} [{lo:.3f}, {hi:.3f}]"

    rows = []  # (label, css class, {task: node ids of the cell})
    tuned = scores[scores["kind"] == EVAL]
    base = scores[scores["kind"] == BASE_EVAL]
    for model, grp in base.groupby("model", sort=False):
        rows.append((f"{model} (base model)", "base", {t: list(dict.fromkeys(g["node"]))
                                                        for t, g in grp.groupby("task")}))
    for model, grp in scores[scores["kind"] == CHECKPOINT_EVAL].groupby("model", sort=False):  # trained elsewhere
        rows.append((f"{model} (checkpoint)", "checkpoint", {t: list(dict.fromkeys(g["node"]))
                                                             for t, g in grp.groupby("task")}))
    settings: dict[tuple, dict] = {}  # (model, setting) -> task -> epoch -> score rows (one per seed)
    item_nodes = {r["node"]: r for r in items}
    for _, r in tuned.drop_duplicates("node").iterrows():
        setting = item_nodes[r["node"]]["setting"] if r["node"] in item_nodes else r["run"]
        settings.setdefault((r["model"], setting), {}).setdefault(r["task"], {}).setdefault(int(r["epoch"]), []).append(r)
    for (model, setting), per_task in settings.items():
        cells, label = {}, None
        for task, epochs in per_task.items():
            last = max(epochs)
            nodes = [r["node"] for r in epochs[last]]
            cells[task] = nodes
            first = epochs[last][0]
            label = first["run"] if len(nodes) == 1 else f"{setting_label(setting)} ({len(nodes)} seeds)"
        rows.append((label, "", cells))
    head = "".join(f'<th colspan="3">{esc(t)}<br><small>{esc(metrics[t])}{direction(metrics[t])}</small></th>'
                   for t in tasks)
    sub = "".join("<th>score [95% CI]</th><th>vs base [95% CI]</th><th>p (Holm)</th>" for _ in tasks)
    body = []
    for label, cls, cells in rows:
        tds = []
        for t in tasks:
            nodes = cells.get(t)
            if not nodes:
                tds.append(f"<td>{DASH}</td><td>{DASH}</td><td>{DASH}</td>")
                continue
            tds.append(f"<td>{score_cell(nodes, t)}</td>")
            comp = None
            if cls != "base":
                comp = next((r for r in comps.rows if r["kind"] == "vs base" and r["metric"] == metrics[t]
                             and r.get("a_nodes") == tuple(nodes)), None)
            if cls == "base":
                tds.append(f"<td>reference</td><td>{DASH}</td>")
            elif comp is None:
                tds.append(f"<td>{DASH}</td><td>{DASH}</td>")
            else:
                tds.append(f"<td>{comp['diff']:+.3f} [{num(comp['ci_low'])}, {num(comp['ci_high'])}]</td>"
                           f"<td>{p_text(comp['p_holm'])}</td>")
        body.append(f'<tr class="{cls}"><td class="name">{esc(label)}</td>{"".join(tds)}</tr>')
    return (f'<div class="scroll"><table><tr><th class="name" rowspan="2">run</th>{head}</tr><tr>{sub}</tr>'
            + "".join(body) + "</table></div>")


LOWER_IS_BETTER = ("mae", "rmse", "brier", "ece", "confidence_ece", "loss")


def direction(metric: str) -> str:
    return " (lower is better)" if metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER else ""


def setting_label(setting: str) -> str:
    import json

    try:
        grid = json.loads(setting)
    except (TypeError, ValueError):
        return str(setting)
    return ", ".join(f"{k}={setting_text(v)}" for k, v in grid.items()) or "default"


def comparisons_table(comps) -> str:
    if not comps.rows and not comps.refused:
        return "<p>No comparison: the logs hold no per-sample scores, or no pair shares a task.</p>"
    head = ["task", "metric", "a", "b", "n", "mean a", "mean b", "difference [95% CI]", "p", "p (Holm)", "test"]
    body = []
    for r in sorted(comps.rows, key=lambda r: (r["task"], r["metric"], r["kind"] != "vs base", r["a"])):
        naive = ""
        if not _missing(r.get("naive_ci_low")) and (round(r["naive_ci_low"], 3), round(r["naive_ci_high"], 3)) != (
                round(r["ci_low"], 3), round(r["ci_high"], 3)):
            naive = f"<br><small>items as independent: [{num(r['naive_ci_low'])}, {num(r['naive_ci_high'])}]</small>"
        body.append("<tr>" + "".join([
            f'<td class="name">{esc(r["task"])}</td>', f'<td class="name">{esc(r["metric"])}</td>',
            f'<td class="name">{esc(r["a"])}</td>', f'<td class="name">{esc(r["b"])}</td>', f"<td>{r['n']}</td>",
            f"<td>{num(r['mean_a'])}</td>", f"<td>{num(r['mean_b'])}</td>",
            f"<td>{r['diff']:+.3f} [{num(r['ci_low'])}, {num(r['ci_high'])}]{naive}</td>",
            f"<td>{p_text(r['p'])}</td>", f"<td>{p_text(r['p_holm'])}</td>",
            f'<td class="name">{esc(r["test"].split(";")[0])}</td>']) + "</tr>")
    table = ('<div class="scroll"><table><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
             + "".join(body) + "</table></div>")
    how = sorted({r["test"].split("; ", 1)[1] for r in comps.rows if "; " in r["test"]})
    table += f'<p class="note">Intervals: {esc("; ".join(how))}.</p>' if how else ""
    refused = "".join(f"<li>{esc(x)}</li>" for x in comps.refused)
    return (table + (f"<p><b>Refused</b> (not compared: a comparison needs the same items on both sides):</p>"
                     f"<ul>{refused}</ul>" if refused else ""))


MISSING_CELL = re.compile(r"<td>(?:None|NaN|nan|&lt;NA&gt;|)</td>")


def frame_html(df, drop_empty: bool = True, **kw) -> str:
    """A pandas table (without its all-missing columns unless told), missing values as "—", in its own
    horizontal scroll box."""
    df = df.dropna(axis=1, how="all") if drop_empty else df
    return '<div class="scroll">' + MISSING_CELL.sub(f"<td>{DASH}</td>", df.to_html(na_rep=DASH, **kw)) + "</div>"


def logs_list(scores) -> str:
    logs = scores.drop_duplicates("node")[["node", "log"]]
    items = "".join(f"<li>{esc(node)}: <code>inspect view --log-dir {esc(shlex.quote(str(_dir(log))))}</code></li>"
                    for node, log in zip(logs["node"], logs["log"]))
    return (f"<details><summary>Open an evaluation's log in inspect view ({len(logs)})</summary>"
            f"<ul>{items}</ul></details>")


def _dir(log: str) -> str:
    from pathlib import Path

    return str(Path(log).parent)


def page(plan: Plan, scores, report: Report, items=None, comps=None) -> str:
    """report.html's text."""
    from cruijff.results.comparisons import Comparisons
    from cruijff.results.report.plots import headline_metric

    items = items or []
    comps = comps or Comparisons()
    tasks = sorted(scores["task"].dropna().unique()) if not scores.empty else []
    metrics = {t: headline_metric(scores, t) for t in tasks}
    if scores.empty:
        top = "<p>No evaluation has a successful log yet.</p>"
        details = ""
    else:
        top = (headline(scores, items, comps, metrics)
               + f'<p class="note">Score: each task\'s headline metric, with a 95% interval (Wilson for right/'
                 f"wrong scores, a bootstrap over items otherwise; with several seeds, the mean over seeds, a "
                 f"Student-t interval and their sd). vs base: the paired difference on the same items, 95% "
                 f"bootstrap interval; p: {esc(comps.family)}. Each run at its last evaluated epoch; "
                 f"{DASH}: not evaluated or no per-item scores.</p>")
        board = scoreboard(scores)
        board = board[[c for c in board.columns if board[c].notna().any()]]
        details = ("<details><summary>Every score by run and epoch</summary>"
                   + frame_html(board, float_format=score_text) + "</details>")
        shown = scores.drop(columns=["log"]).dropna(axis=1, how="all")
        settings = {c: setting_text for c in shown.columns if c not in ("value", "metric")}
        details += ("<details><summary>All scores (one row per evaluation and metric)</summary>"
                    + frame_html(shown, index=False, formatters={**settings, "value": score_text}) + "</details>")
        details += logs_list(scores)
    missing = "".join(f"<li>{esc(m)}</li>" for m in report.missing)
    title = esc(f"cruijff report: {plan.experiment}")
    imgs = figures(report, tasks, metrics)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>{title}</title>
<style>{CSS}</style></head><body>
<h1>{title}</h1>
<p>{report.evals_scored} of {report.evals_total} evaluations scored. Plan: <code>{esc(plan.output_dir)}</code></p>
{f"<details><summary>{len(report.missing)} without a successful log</summary><ul>{missing}</ul></details>" if missing else ""}
<h2>Results</h2>
{top}
<h2>Paired comparisons</h2>
<p class="note">Every run against its base model and grid settings one hyperparameter apart, on the same test
items matched by sample id ({esc(comps.family)}). Also in comparisons.csv.</p>
{comparisons_table(comps)}
<h2>Plots</h2>
{imgs or "<p>Nothing to plot yet.</p>"}
{"".join(report.sections)}
{summaries_html(scores)}
<h2>Details</h2>
{details}
</body></html>
"""
