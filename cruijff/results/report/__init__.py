"""`cruijff report`: every eval score and training loss of a plan, as tidy tables, plots and one HTML page.

The stages, one module each: collect (rows and frames from plan.json, eval logs, metrics.jsonl) →
tables (scoreboard, CSV, Parquet) → plots (PNG) → html (report.html); report_groups and report_cost
add their sections. Outputs under `--out` (default `<plan>/report/`): scores.csv + scores.parquet
(one row per node and metric), comparisons.csv + comparisons.parquet (paired
comparisons, cruijff.results.comparisons), losses.csv + losses.parquet (one row per logged loss), plots/*.png and
report.html. pandas, pyarrow and matplotlib are imported inside the functions (cruijff[eval]).
"""

from __future__ import annotations

from pathlib import Path

from cruijff.plan import load_plan
from cruijff.results.report.collect import (BASE_EPOCH, Report, ReportError, frames, hyperparameter_names,
                                            loss_rows, score_rows, varied_hyperparameters)
from cruijff.results.report.html import page
from cruijff.results.report.plots import draw_plots, save_figure
from cruijff.results.report.tables import score_text, scoreboard, setting_text, write_tables

__all__ = ["BASE_EPOCH", "Report", "ReportError", "build_report", "frames", "hyperparameter_names", "loss_rows",
           "save_figure", "score_rows", "score_text", "scoreboard", "setting_text", "varied_hyperparameters"]


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
    scores, losses, total, missing = frames(plan, root)
    report = Report(out_dir=out_dir, evals_total=total, evals_scored=total - len(missing), missing=missing)
    report.tables = write_tables(scores, losses, out_dir)
    report.plots = draw_plots(scores, losses, plan, out_dir)
    from cruijff.results import report_cost, report_groups  # research-kit sections (own modules)

    for extra in (report_groups, report_cost):
        tables, plots, section = extra.write_sections(plan, root, out_dir)
        report.tables.update(tables)
        report.plots += plots
        report.sections.append(section)
    from cruijff.results.comparisons import comparisons, item_rows, write_comparisons

    items = item_rows(plan, root)
    report.comparisons = comparisons(items)
    report.tables.update(write_comparisons(report.comparisons, out_dir))
    report.html = out_dir / "report.html"
    report.html.write_text(page(plan, scores, report, items, report.comparisons), encoding="utf-8")
    return report
