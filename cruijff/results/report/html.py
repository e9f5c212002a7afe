"""The report's one HTML page: plots inlined as base64 PNG, the scoreboard, extra sections, all scores."""

from __future__ import annotations

import base64
import html

from cruijff.plan import Plan
from cruijff.results.report.collect import Report
from cruijff.results.report.tables import score_text, scoreboard, setting_text
from cruijff.results.scorer_summary import summaries_html


def page(plan: Plan, scores, report: Report) -> str:
    """report.html's text."""
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

