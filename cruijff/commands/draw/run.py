"""`cruijff apply`, `cancel` and `report` for humans: apply's progress bars and what each did."""

from __future__ import annotations

from collections import Counter

import click


class ApplyProgress:
    """apply's Progress (cruijff.run.apply) on stderr: a bar per phase (submitting, then running for local)."""

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


def apply_result(result) -> None:
    """An ApplyResult: what was (or, with --dry-run, would be) submitted, kept, recovered, cancelled."""
    from cruijff.run.apply import BLOCKED, HELD, KEEP, SUBMIT

    say = click.echo
    calls = f" in {result.sbatch_calls} sbatch call(s)" if result.executor == "slurm" else ""
    if result.dry_run:
        say(f"would submit {len(result.ids(SUBMIT))} job(s){calls} with the {result.executor} executor:")
        for node_id in result.ids(SUBMIT):
            say(f"  + {node_id}  ({result.decisions[node_id].reason})")
    else:
        say(f"submitted {len(result.submitted)} job(s){calls} with the {result.executor} executor")
    reused = getattr(result, "reused", [])
    if reused:
        verb = "would reuse" if result.dry_run else "reused"
        say(f"  {verb} {len(reused)} node(s) from the results store instead of running them:")
        for node_id, src in reused[:20]:
            say(f"  = {node_id}  (experiment {src.get('experiment')}, {src.get('plan_dir')})")
        if len(reused) > 20:
            say(f"  … and {len(reused) - 20} more (--json lists them)")
    for node_id, why in getattr(result, "store_refused", []):
        say(f"  ! {node_id}: not reused, {why}; it runs instead")
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
    verb = "would cancel" if result.dry_run else "cancelled"
    if result.removed:
        say(f"  {verb} {len(result.removed)} job(s) of nodes that left the plan: "
            + ", ".join(f"{r.node_id} ({r.job_id})" for r in result.removed[:10])
            + (" ..." if len(result.removed) > 10 else ""))
    for d in result.duplicates:
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
    blocked = result.ids(BLOCKED)
    if blocked:
        say(f"  blocked by those: {len(blocked)} node(s)")
    if result.final:  # in status's words (done, failed, blocked, cancelled), in status's order
        from cruijff.run.status import DISPLAY_ORDER, display_state

        counts = Counter(display_state(s) for s in result.final.values())
        say("  finished: " + ", ".join(f"{k} {counts[k]}" for k in sorted(counts, key=_order(DISPLAY_ORDER))))


def cancel_result(result: dict) -> None:
    """cruijff.run.cancel's answer: the jobs cancelled (the first 20 listed)."""
    n = len(result["cancelled"])
    listed = ", ".join(f"{c['node']} ({c['job_id']})" for c in result["cancelled"][:20])
    more = f", … and {n - 20} more (--json lists them all)" if n > 20 else ""
    click.echo(f"cancelled {n} job(s)" + (f": {listed}{more}" if n else ""))
    if result.get("removed_cancelled"):
        click.echo(f"cancelled {len(result['removed_cancelled'])} job(s) of nodes that left the plan")


def report_result(r) -> None:
    """cruijff.results.report's Report: how many evaluations are scored, and the files written."""
    click.echo(f"{r.evals_scored}/{r.evals_total} evaluations scored"
               + (f" ({len(r.missing)} without a successful log)" if r.missing else ""))
    for path in r.tables.values():
        click.echo(f"  table  {path}")
    for path in r.plots:
        click.echo(f"  plot   {path}")
    click.echo(f"  html   {r.html}")
    if r.comparisons is not None:
        from cruijff.results.comparisons import against_base, line

        rows = against_base(r.comparisons)
        if rows:
            click.echo(f"Fine-tuned vs base model (paired, same items; {r.comparisons.family}):")
        for row in rows:
            click.echo(f"  {line(row)}")


def _order(names):
    return lambda name: (names.index(name) if name in names else len(names), name)
