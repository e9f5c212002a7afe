"""`cruijff report PLAN_DIR`: tables, plots and an HTML page of a plan's scores and losses."""

from __future__ import annotations

import click


@click.command()
@click.argument("plan_dir", type=click.Path(file_okay=False, path_type=str))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Where to write the report (default: PLAN_DIR/report).")
def report(plan_dir: str, out: str | None) -> None:
    """Collect scores and losses into tables and plots."""
    from cruijff.results.report import build_report

    r = build_report(plan_dir, out)
    click.echo(f"{r.evals_scored}/{r.evals_total} evaluations scored"
               + (f" ({len(r.missing)} without a successful log)" if r.missing else ""))
    for name, path in r.tables.items():
        click.echo(f"  table  {path}")
    for path in r.plots:
        click.echo(f"  plot   {path}")
    click.echo(f"  html   {r.html}")
