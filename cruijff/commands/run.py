"""`cruijff apply`, `status`, `cancel`: parse options, call the domain function, hand the data to
cruijff.commands.draw (for humans) or jsonout (--json: one versioned object).
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path

import click

from cruijff.commands import draw
from cruijff.commands.jsonout import emit, errors
from cruijff.errors import ExitCode, UsageError
from cruijff.run.executors.select import EXECUTOR_CHOICES
from cruijff.run.selectors import SELECTOR_HELP

_only = click.option("--only", "only", metavar="SELECTOR", help=SELECTOR_HELP)
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
_executor_option = click.option("--executor", type=click.Choice(EXECUTOR_CHOICES), default=None,
                         help="Which scheduler to ask (default: the one the plan was applied with).")


def _echo_json(data: dict, compact: bool = False) -> None:
    """A domain object that names its own kind (cruijff.apply, cruijff.status, cruijff.cancel)."""
    emit(str(data["kind"]).removeprefix("cruijff."), data, compact=compact)


def _plan_for(target: str):
    from cruijff.plan import load_plan

    return load_plan(target)


def _plan_dir(target: str) -> str:
    """A plan directory as is; a manifest → its output_dir (read, not planned again), as apply takes both."""
    if not Path(target).is_file():
        return target
    from cruijff.compiler.pipeline import check

    return check(target, check_paths=False).manifest["output_dir"]


def _executor(name: str | None, plan, *, for_state: bool = False):
    """The executor to use; status and cancel follow what state.db says was used."""
    from cruijff.run.executors.select import make_executor, resolve_name

    if name is None and for_state:
        from cruijff.run.state import State

        with State(plan.output_dir, create=False) as state:
            used = state.executors()
        if len(used) == 1:
            name = used.pop()
    return make_executor(resolve_name(name, plan), plan)


@click.command("apply")
@click.argument("target", default=".", metavar="[PLAN_DIR | MANIFEST]")
@click.option("--executor", type=click.Choice(EXECUTOR_CHOICES), default=None,
              help="Where jobs run (default: the manifest's choice; auto = slurm if sbatch is on PATH).")
@_only
@click.option("--retry-failed", is_flag=True, help="Resubmit failed and cancelled nodes and what they blocked.")
@click.option("--force", is_flag=True,
              help="With --only: run the selection again whatever its state (its live jobs are cancelled first).")
@click.option("--dry-run", is_flag=True, help="Show what would be submitted; change nothing.")
@click.option("--set", "sets", metavar="KEY=VALUE", multiple=True,
              help="With a MANIFEST: override a value before it is planned (as `cruijff plan --set`).")
@_json
def apply(target: str, executor: str | None, only: str | None, retry_failed: bool, force: bool, dry_run: bool,
          sets: tuple[str, ...], as_json: bool) -> None:
    """Submit the jobs of a plan that are missing, each exactly once, in dependency order.

    Given a manifest, compiles it first. Re-running is safe: jobs already pending, running or
    done are kept, a changed node is resubmitted, and with --only the selected nodes bring the
    unsatisfied ancestors they need along.
    """
    from cruijff.run.apply import apply as run_apply
    from cruijff.run.apply import load_or_compile

    with errors("apply", as_json):
        plan_dir = load_or_compile(target, sets)
        plan = _plan_for(plan_dir)
        chosen = _executor(executor, plan)
        progress = None if as_json or dry_run else draw.ApplyProgress()
        result = run_apply(plan, chosen, only=only, retry_failed=retry_failed, force=force, dry_run=dry_run,
                           progress=progress)
    if as_json:
        _echo_json(result.as_dict())
    else:
        draw.apply_result(result)
    if not result.ok:  # a local job failed: say so in the exit status (SystemExit passes through click)
        sys.exit(int(ExitCode.FAILURE))


@click.command("status")
@click.argument("plan_dir", default=".", type=click.Path(), metavar="[PLAN_DIR | MANIFEST]")
@_only
@_json
@_executor_option
@click.option("--watch", "watch", is_flag=False, flag_value=5.0, default=None, type=float, metavar="[SECONDS]",
              help="Refresh every SECONDS (default 5), backing off while nothing changes.")
@click.option("--all", "show_all", is_flag=True,
              help="Draw every row of the grid (more than 40 rows are summarised by stage).")
def status(plan_dir: str, only: str | None, as_json: bool, executor: str | None, watch: float | None,
           show_all: bool) -> None:
    """Show the grid: each node's state, elapsed time and, for finished evals, the headline score.

    A grid of many rows is summarised by stage; --all or --only draws every node. Exit status:
    0 when no node failed or is blocked; 1 when some did (or the scheduler cannot be read:
    nothing is guessed), after the whole answer is printed; 2 for a wrong argument."""
    from cruijff.run.status import collect, summarised

    with errors("status", as_json):
        plan_dir = _plan_dir(plan_dir)
        plan = _plan_for(plan_dir)
        chosen = _executor(executor, plan, for_state=True)
        summary = not as_json and summarised(plan, only, show_all)
        full = False if summary else True if show_all or only else None
        if watch is None:
            report = collect(plan_dir, chosen, only=only, plan=plan, scores=not summary)
            if as_json:
                _echo_json(report.as_dict(), compact=True)
            else:
                draw.print_status(report, full)
        else:
            if watch <= 0:
                raise UsageError("--watch SECONDS must be positive")
            report = _watch(plan_dir, chosen, only, as_json, watch, full)
    if report is not None and not report.ok:  # a failed run is visible to scripts
        sys.exit(int(ExitCode.FAILURE))


def _watch(plan_dir, executor, only, as_json: bool, interval: float, full: bool | None = None):
    """Refresh until nothing is pending or running; back off (×1.5, up to 12×) while unchanged.
    The last report shown (None when interrupted before the first)."""
    from cruijff.run.status import collect

    delay, last, report = interval, None, None
    try:
        with nullcontext(lambda r: _echo_json(r.as_dict(), compact=True)) if as_json else draw.live_status(full) as show:
            while True:
                report = collect(plan_dir, executor, only=only, scores=full is not False)
                key = [(n.id, n.state, n.score) for n in report.nodes]
                show(report)
                if report.settled:
                    return report
                delay = interval if key != last else min(delay * 1.5, interval * 12)
                last = key
                time.sleep(delay)
    except KeyboardInterrupt:
        return report


@click.command("cancel")
@click.argument("plan_dir", default=".", type=click.Path(), metavar="[PLAN_DIR | MANIFEST]")
@_only
@_json
@_executor_option
def cancel(plan_dir: str, only: str | None, as_json: bool, executor: str | None) -> None:
    """Cancel the pending and running jobs of a plan (or of the --only selection).

    While a local `apply` runs the plan, that apply is asked to stop the selected jobs and
    record them cancelled; cancel returns once it has."""
    from cruijff.run.cancel import cancel as run_cancel

    with errors("cancel", as_json):
        plan_dir = _plan_dir(plan_dir)
        plan = _plan_for(plan_dir)
        result = run_cancel(plan_dir, _executor(executor, plan, for_state=True), only=only)
    if as_json:
        _echo_json(result)
    else:
        draw.cancel_result(result)

