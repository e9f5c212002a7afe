"""`cruijff report PLAN_DIR`: tables, plots and an HTML page of a plan's scores and losses."""

from __future__ import annotations

import click

from cruijff.commands.jsonout import emit, errors


@click.command()
@click.argument("plan_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Where to write the report (default: PLAN_DIR/report).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def report(plan_dir: str, out: str | None, as_json: bool) -> None:
    """Collect scores and losses into tables and plots."""
    from cruijff.results.report import build_report

    with errors("report", as_json):
        r = build_report(plan_dir, out)
    if as_json:
        emit("report", {"out_dir": r.out_dir, "evals_total": r.evals_total, "evals_scored": r.evals_scored,
                        "missing": r.missing, "tables": r.tables, "plots": r.plots, "html": r.html})
    else:
        from cruijff.commands import draw

        draw.report_result(r)
