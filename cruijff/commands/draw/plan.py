"""`cruijff validate` and `cruijff plan` for humans: problems, the plan summary, changes, estimate."""

from __future__ import annotations

from typing import Any

import click

KIND_LABELS = {"prepare": "data preparation", "finetune": "fine-tune runs", "eval": "evaluations",
               "base_eval": "base-model evaluations", "checkpoint_eval": "checkpoint evaluations"}


def problems(found: list) -> None:
    """Each problem (file:line:col: what; hint) on stderr."""
    for p in found:
        click.echo(str(p), err=True)


def manifest_failed(errors: list, warnings: list, writes: bool = True) -> None:
    """Every problem, then the count; `writes`: the command would have written files (plan, import)."""
    problems(warnings)
    problems(errors)
    n = len(errors)
    click.echo(f"{n} error{'s' if n != 1 else ''}" + ("; nothing written." if writes else "."), err=True)


def validated(manifest: str, runs: int, warnings: list) -> None:
    problems(warnings)
    click.echo(f"{manifest}: ok ({runs} fine-tune run{'s' if runs != 1 else ''})")


def ready() -> None:
    """Load what plan_summary draws with (rich, and the emoji and character-width tables it loads
    on first use: ~30 ms) while plan waits for something else."""
    import io

    from rich.console import Console
    from rich.table import Table

    Console(file=io.StringIO(), width=40).print(Table("…"))


def plan_summary(summary: dict[str, Any], diff=None) -> None:
    """The jobs table, what changed since the last plan, the SLURM layout, the estimate, the next step."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"plan: {summary['experiment']}", title_justify="left")
    table.add_column("jobs")
    table.add_column("count", justify="right")
    table.add_column("GPUs", justify="right")
    table.add_column("GPU-hours asked", justify="right")  # time limit × GPUs, what SLURM reserves
    for kind, row in summary["kinds"].items():
        table.add_row(KIND_LABELS.get(kind, kind), str(row["jobs"]), str(row["gpus"]), f"{row['gpu_hours']:g}")
    table.add_row("total", str(summary["jobs"]), "", f"{summary['gpu_hours']:g}", style="bold")
    console.print(table)
    for line in summary.get("overrides") or []:  # `cruijff plan --set`
        console.print(f"--set {line}", highlight=False, soft_wrap=True, markup=False)
    _cells(console, summary.get("cells") or [])
    ch = summary.get("changes")
    if ch:
        console.print(f"changes since the last plan: [green]{ch['added']} added[/], [yellow]{ch['changed']} changed[/], "
                      f"[red]{ch['removed']} removed[/], {ch['unchanged']} unchanged")
        _changes(console, diff, summary.get("changed_settings") or {})
    slurm = summary.get("slurm")
    if slurm and "error" in slurm:
        console.print(f"[dim]SLURM limits not read: {slurm['error']}[/]", highlight=False)
    elif slurm:
        arrays = f"{slurm['arrays']} job arrays" + (f" and {slurm['plain_jobs']} plain jobs" if slurm["plain_jobs"] else "")
        size = f"MaxArraySize {slurm['max_array_size']}" if slurm["max_array_size"] else "job arrays off"
        console.print(f"SLURM: {slurm['jobs']} jobs in {slurm['submissions']} sbatch calls ({arrays}; {size})",
                      highlight=False, soft_wrap=True)
    _estimate(console, summary.get("estimate"))
    _store(console, summary.get("store"))
    console.print(f"wrote {summary['output_dir']}/plan.json — next: cruijff apply {summary['output_dir']}",
                  soft_wrap=True, highlight=False)


def _cells(console, cells: list[dict], shown: int = 12) -> None:
    """The evaluation matrix: how many cells, the first few, and every cross-prompt evaluation."""
    from rich.markup import escape

    if not cells:
        return
    base = sum(1 for c in cells if c["kind"] == "base_eval")
    checkpoints = sum(1 for c in cells if c["kind"] == "checkpoint_eval")
    console.print(f"evaluation cells: {len(cells)} ({len(cells) - base - checkpoints} of fine-tunes, {base} of base "
                  f"models" + (f", {checkpoints} of checkpoints)" if checkpoints else ")"), highlight=False)

    def line(c: dict) -> str:
        who = (f"{c['run']} epoch {c['epoch']}" if c["run"] is not None else
               f"checkpoint {c['model']}" if c["kind"] == "checkpoint_eval" else f"base {c['model']}")
        cross = c.get("cross_prompt")
        extra = (f"  [yellow]cross-prompt: trained with '{escape(cross['trained'])}', evaluated with "
                 f"'{escape(cross['evaluated'])}'[/]") if cross else ""
        return f"  {escape(who)} · {escape(c['task'])} ({escape(c['dataset'])}){extra}"

    for c in cells[:shown]:
        console.print(line(c), highlight=False, soft_wrap=True)
    crossed = [c for c in cells[shown:] if c.get("cross_prompt")]
    for c in crossed:
        console.print(line(c), highlight=False, soft_wrap=True)
    rest = len(cells) - shown - len(crossed)
    if rest > 0:
        console.print(f"  … {rest} more (`cruijff plan --json` lists every cell)", highlight=False)
    n_cross = sum(1 for c in cells if c.get("cross_prompt"))
    if n_cross:
        console.print(f"[yellow]{n_cross} cross-prompt evaluation(s)[/]: fine-tunes evaluated with a prompt other "
                      "than the one they were trained with (the tasks say cross_prompt: true)", highlight=False)


def _changes(console, diff, details: dict, groups_shown: int = 12) -> None:
    """terraform-style lines: `~ node (+N more): setting: old → new`; every node with --json."""
    from rich.markup import escape

    from cruijff.compiler.summary import change_groups

    if diff is not None and not (diff.changed or diff.removed or diff.unchanged):
        return  # a first plan: everything is new, the counts say it

    def ids(nodes) -> str:
        nodes = list(nodes)
        return escape(nodes[0]) + (f" (+{len(nodes) - 1} more)" if len(nodes) > 1 else "")

    lines = [f"  [yellow]~[/] {ids(nodes)}: {escape('; '.join(what))}" for nodes, what in change_groups(details)]
    if diff is not None:
        lines += [f"  [green]+[/] {ids(diff.added)}"] if diff.added else []
        lines += [f"  [red]-[/] {ids(diff.removed)}"] if diff.removed else []
    for line in lines[:groups_shown]:
        console.print(line, highlight=False, soft_wrap=True)
    if len(lines) > groups_shown:
        console.print(f"  … {len(lines) - groups_shown} more kinds of change (`cruijff plan --json` lists every node)",
                      highlight=False)


def _store(console, store: dict | None, shown: int = 20) -> None:
    """Reused nodes (from which experiment) and each miss with a near stored run, explained."""
    if not store:
        return
    from rich.markup import escape

    reused = store["reused"]
    if reused:
        console.print(f"reused from the store ({escape(store['path'])}): {len(reused)} node(s), "
                      f"{store.get('gpu_hours_saved', 0):g} GPU-hours asked saved, "
                      f"{store.get('estimated_gpu_hours_saved', 0):.3g} GPU-hours by the estimate",
                      highlight=False, soft_wrap=True)
        for node_id, src in list(reused.items())[:shown]:
            console.print(f"  = {escape(node_id)}: from experiment {escape(str(src.get('experiment')))} "
                          f"({escape(str(src.get('plan_dir')))})", highlight=False, soft_wrap=True)
        if len(reused) > shown:
            console.print(f"  … {len(reused) - shown} more (`cruijff plan --json` lists every node)", highlight=False)
    misses = list(store["misses"].values())
    for miss in misses[:shown]:
        console.print(f"  ≠ {escape(miss['text'])}", highlight=False, soft_wrap=True)
    if len(misses) > shown:
        console.print(f"  … {len(misses) - shown} more misses (`cruijff plan --json` explains every node)",
                      highlight=False)


def _estimate(console, est: dict | None) -> None:
    """One line of totals, then the basis of every number (see cruijff/compiler/estimate.py)."""
    from cruijff.compiler.estimate import human_bytes

    if not est or (not est["runs"] and not est["not_estimated"]):
        return
    if est["runs"]:
        console.print(f"estimate for {len(est['runs'])} fine-tune run{'s' if len(est['runs']) != 1 else ''}: "
                      f"{est['gpu_hours']:.3g} GPU-hours expected (from throughput; the table's GPU-hours "
                      f"asked are the time limits), {human_bytes(est['disk_bytes'])} disk", highlight=False,
                      soft_wrap=True)
        for basis in est["basis"]:
            console.print(f"  basis: {basis}", highlight=False, soft_wrap=True)
        console.print(f"  method: {est['method']}", highlight=False, soft_wrap=True)
    if est["not_estimated"]:
        for why, runs in (est.get("not_estimated_why") or {"": est["not_estimated"]}).items():
            console.print(f"  not estimated ({len(runs)} run{'s' if len(runs) != 1 else ''}): {why}",
                          highlight=False, soft_wrap=True)
