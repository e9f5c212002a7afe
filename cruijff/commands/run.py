"""`cruijff apply`, `status`, `cancel`: parse options, call the domain function, render the data.

Progress and human text go to stderr/stdout through rich; --json prints one versioned object.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter

from contextlib import contextmanager

import click

from cruijff.errors import CruijffError, ExitCode, UsageError
from cruijff.run.executors.select import EXECUTOR_CHOICES
from cruijff.run.selectors import SELECTOR_HELP

_only = click.option("--only", "only", metavar="SELECTOR", help=SELECTOR_HELP)
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
_executor_option = click.option("--executor", type=click.Choice(EXECUTOR_CHOICES), default=None,
                         help="Which scheduler to ask (default: the one the plan was applied with).")


def _echo_json(data: dict, compact: bool = False) -> None:
    from cruijff.commands.jsonout import emit

    emit(str(data.get("kind", "cruijff.run")).removeprefix("cruijff."), data, compact=compact)


@contextmanager
def _json_errors(command: str, as_json: bool):
    """With --json, a domain error is a JSON object on stdout too (and the same exit code)."""
    try:
        yield
    except CruijffError as e:
        if not as_json:
            raise
        _echo_json({"schema_version": 1, "kind": "cruijff.error", "command": command, "ok": False,
                    "error": {"message": e.message, "hint": e.hint, "exit_code": int(e.exit_code)}})
        click.echo(f"error: {e}", err=True)
        sys.exit(int(e.exit_code))


class RichProgress:
    """apply's Progress on stderr: a bar per phase (submitting, then running for local)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self._progress = None
        self._task = None

    def start(self, phase: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if total == 0:
            return
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("{task.fields[last]}", style="dim"),
                                  console=self.console, transient=False)
        self._task = self._progress.add_task(phase, total=total, last="")
        self._progress.start()

    def note(self, text: str) -> None:
        self.console.print(text, style="dim")

    def advance(self, text: str, count: int = 1) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=count, last=text)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _plan_for(target: str):
    from cruijff.plan import load_plan

    return load_plan(target)


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
@_json
def apply(target: str, executor: str | None, only: str | None, retry_failed: bool, force: bool, dry_run: bool,
          as_json: bool) -> None:
    """Submit the jobs of a plan that are missing, each exactly once, in dependency order.

    Given a manifest, compiles it first. Re-running is safe: jobs already pending, running or
    done are kept, a changed node is resubmitted, and with --only the selected nodes bring the
    unsatisfied ancestors they need along.
    """
    from cruijff.run.apply import apply as run_apply
    from cruijff.run.apply import load_or_compile

    with _json_errors("apply", as_json):
        plan_dir = load_or_compile(target)
        plan = _plan_for(plan_dir)
        chosen = _executor(executor, plan)
        progress = None if as_json or dry_run else RichProgress()
        result = run_apply(plan, chosen, only=only, retry_failed=retry_failed, force=force, dry_run=dry_run,
                           progress=progress)
    if as_json:
        _echo_json(result.as_dict())
    else:
        _print_apply(result)
    if not result.ok:  # a local job failed: say so in the exit status (SystemExit passes through click)
        sys.exit(int(ExitCode.FAILURE))


def _print_apply(result) -> None:
    from cruijff.run.apply import BLOCKED, HELD, KEEP, SUBMIT

    say = click.echo
    if result.dry_run:
        calls = f" in {result.sbatch_calls} sbatch call(s)" if result.executor == "slurm" else ""
        say(f"would submit {len(result.ids(SUBMIT))} job(s){calls} with the {result.executor} executor:")
        for node_id in result.ids(SUBMIT):
            say(f"  + {node_id}  ({result.decisions[node_id].reason})")
    else:
        calls = f" in {result.sbatch_calls} sbatch call(s)" if result.executor == "slurm" else ""
        say(f"submitted {len(result.submitted)} job(s){calls} with the {result.executor} executor")
    adopted_arrays = Counter(job_id.split("_")[0] for _, job_id in result.adopted if "_" in job_id)
    for array_id, n in adopted_arrays.items():
        say(f"  recovered job array {array_id}: {n} task(s) (submitted by an interrupted apply)")
    for node_id, job_id in result.adopted:
        if "_" in job_id:
            continue
        say(f"  recovered {node_id} → job {job_id} (submitted by an interrupted apply)")
    if result.waited_s >= 0.5:
        say(f"  waited {result.waited_s:.1f} s for the sbatch calls of an interrupted apply to settle")
    if result.replaced:
        say(f"  cancelled {len(result.replaced)} superseded job(s): {', '.join(result.replaced)}")
    if result.removed:
        verb = "would cancel" if result.dry_run else "cancelled"
        say(f"  {verb} {len(result.removed)} job(s) of nodes that left the plan: "
            + ", ".join(f"{r.node_id} ({r.job_id})" for r in result.removed[:10])
            + (" ..." if len(result.removed) > 10 else ""))
    for d in result.duplicates:
        verb = "would cancel" if result.dry_run else "cancelled"
        say(f"  {d.node_id} had {1 + len(d.extra)} live jobs: kept the oldest ({d.keep}), {verb} {', '.join(d.extra)}")
    if result.ancestors_added:
        say(f"  included {len(result.ancestors_added)} unsatisfied ancestor(s) of the selection: "
            + ", ".join(result.ancestors_added))
    kept = result.ids(KEEP)
    if kept:
        say(f"  kept {len(kept)} already pending, running or done")
    held = result.ids(HELD)
    if held:
        say(f"  not resubmitted, failed or cancelled: {', '.join(held)} (use --retry-failed)")
    blocked = [i for i in result.ids(BLOCKED)]
    if blocked:
        say(f"  blocked by those: {len(blocked)} node(s)")
    if result.final:
        counts = Counter(result.final.values())
        say("  finished: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


@click.command("status")
@click.argument("plan_dir", default=".", type=click.Path(file_okay=False))
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

    A grid of many rows is summarised by stage; --all or --only draws every node. Exits 1 when
    the scheduler cannot be read (nothing is guessed)."""
    from cruijff.commands.draw import render_text
    from cruijff.run.status import collect, summarised

    with _json_errors("status", as_json):
        plan = _plan_for(plan_dir)
        chosen = _executor(executor, plan, for_state=True)
        summary = not as_json and summarised(plan, only, show_all)
        full = False if summary else True if show_all or only else None
        if watch is None:
            report = collect(plan_dir, chosen, only=only, plan=plan, scores=not summary)
            if as_json:
                _echo_json(report.as_dict(), compact=True)
            else:
                from rich.console import Console

                Console().print(render_text(report, full))
            return
        if watch <= 0:
            raise UsageError("--watch SECONDS must be positive")
        _watch(plan_dir, chosen, only, as_json, watch, full)


def _watch(plan_dir, executor, only, as_json: bool, interval: float, full: bool | None = None) -> None:
    """Refresh until nothing is pending or running; back off (×1.5, up to 12×) while unchanged."""
    from rich.console import Console
    from rich.live import Live

    from cruijff.commands.draw import render_text
    from cruijff.run.status import collect

    delay, last = interval, None
    console = Console()
    try:
        with Live(console=console, auto_refresh=False, transient=False) if not as_json else _NoLive() as live:
            while True:
                report = collect(plan_dir, executor, only=only, scores=full is not False)
                key = [(n.id, n.state, n.score) for n in report.nodes]
                if as_json:
                    click.echo(json.dumps(report.as_dict()))
                else:
                    live.update(render_text(report, full), refresh=True)
                if report.settled:
                    return
                delay = interval if key != last else min(delay * 1.5, interval * 12)
                last = key
                time.sleep(delay)
    except KeyboardInterrupt:
        return
    finally:
        if not as_json:
            console.line()


class _NoLive:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


@click.command("cancel")
@click.argument("plan_dir", default=".", type=click.Path(file_okay=False))
@_only
@_json
@_executor_option
def cancel(plan_dir: str, only: str | None, as_json: bool, executor: str | None) -> None:
    """Cancel the pending and running jobs of a plan (or of the --only selection).

    While a local `apply` runs the plan, that apply is asked to stop the selected jobs and
    record them cancelled; cancel returns once it has."""
    from cruijff.run.cancel import cancel as run_cancel

    with _json_errors("cancel", as_json):
        plan = _plan_for(plan_dir)
        result = run_cancel(plan_dir, _executor(executor, plan, for_state=True), only=only)
    if as_json:
        _echo_json(result)
    else:
        n = len(result["cancelled"])
        listed = ", ".join(f"{c['node']} ({c['job_id']})" for c in result["cancelled"][:20])
        more = f", … and {n - 20} more (--json lists them all)" if n > 20 else ""
        click.echo(f"cancelled {n} job(s)" + (f": {listed}{more}" if n else ""))
        if result.get("removed_cancelled"):
            click.echo(f"cancelled {len(result['removed_cancelled'])} job(s) of nodes that left the plan")

