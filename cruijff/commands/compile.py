"""`cruijff validate`, `cruijff plan`, `cruijff schema`: the compiler's commands."""

from __future__ import annotations

import json
import sys

import click

from cruijff.errors import ManifestError, Problem

KIND_LABELS = {"prepare": "data preparation", "finetune": "fine-tune runs", "eval": "evaluations",
               "base_eval": "base-model evaluations"}


def _print_problems(problems: list[Problem], *, as_json: bool = False) -> None:
    for p in problems:
        click.echo(str(p), err=True)


def _fail(e: ManifestError, as_json: bool, kind: str = "validate") -> None:
    if as_json:
        from cruijff.commands.jsonout import emit

        emit(kind, {"ok": False, "errors": [p.as_dict() for p in e.problems],
                    "warnings": [p.as_dict() for p in e.warnings]})
    else:
        _print_problems(e.warnings)
        _print_problems(e.problems)
        n = len(e.problems)
        click.echo(f"{n} error{'s' if n != 1 else ''}; nothing written.", err=True)
    sys.exit(int(e.exit_code))


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(manifest: str, as_json: bool) -> None:
    """Check MANIFEST against the schema and the semantic rules; print every problem at once."""
    from cruijff.compiler.pipeline import check

    try:
        checked = check(manifest)
    except ManifestError as e:
        _fail(e, as_json)
        return
    if as_json:
        from cruijff.commands.jsonout import emit

        emit("validate", {"ok": True, "runs": len(checked.runs), "errors": [],
                          "warnings": [p.as_dict() for p in checked.warnings]})
        return
    _print_problems(checked.warnings)
    click.echo(f"{manifest}: ok ({len(checked.runs)} fine-tune run{'s' if len(checked.runs) != 1 else ''})")


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Plan (and output) directory; default: output_dir.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def plan(manifest: str, out: str | None, as_json: bool) -> None:
    """Compile MANIFEST into a plan directory: configs, job scripts and plan.json."""
    from pathlib import Path

    from cruijff.compiler.pipeline import compile_manifest
    from cruijff.compiler.summary import plan_summary, setting_changes
    from cruijff.compiler.write import previous_plan, write_plan

    try:
        compiled = compile_manifest(manifest, out=out)
    except ManifestError as e:
        _fail(e, as_json, "plan")
        return
    root = Path(compiled.plan.output_dir)
    old = previous_plan(root)
    # Read before write_plan replaces them: the old rendered files say which settings changed.
    details = setting_changes(old, compiled.plan, compiled.files, lambda rel: _read(root / rel)) if old else {}
    diff = write_plan(compiled.plan, compiled.files)
    summary = plan_summary(compiled.plan, diff)
    summary["changed_settings"] = details
    warnings = list(compiled.checked.warnings)
    summary["slurm"], fit = _slurm_fit(compiled.plan, compiled.files)
    from cruijff.compiler.estimate import estimate_plan  # GPU-hours and disk from the data (no torch)

    summary["estimate"] = estimate_plan(compiled.checked.manifest, compiled.plan)
    warnings += fit
    if as_json:
        summary["warnings"] = [p.as_dict() for p in warnings]
        summary["diff"] = {**diff.as_dict(), "settings": summary.pop("changed_settings")}
        from cruijff.commands.jsonout import emit

        emit("plan", {"ok": True, **summary})
        return
    _print_problems(warnings)
    _render_summary(summary, diff)


def _read(path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _slurm_fit(plan, files: dict[str, str]):
    """Where the plan will go to SLURM: how it is submitted and whether it fits the user's limits."""
    from cruijff.errors import CruijffError
    from cruijff.run.executors.select import make_executor, resolve_name
    from cruijff.run.executors.slurm import sinfo_nodes
    from cruijff.compiler.capacity import SINFO_NODE_FORMAT, fit_problems, parse_sinfo_nodes, resource_problems, submission_layout

    if resolve_name(None, plan) != "slurm":
        return None, []
    try:
        executor = make_executor("slurm", plan)
        executor.attempts = 1  # plan must not wait out a down slurmctld: just say it could not ask
        limits = executor.limits()
        size = executor.array_limit()
        nodes = parse_sinfo_nodes(sinfo_nodes(executor.runner, SINFO_NODE_FORMAT))
    except CruijffError as e:
        return {"error": e.message}, []
    layout = submission_layout(plan, files, size)
    layout["limits"] = {k: (v[0] if isinstance(v, tuple) else v) for k, v in limits.items()}
    return layout, fit_problems(len(plan.nodes), limits) + resource_problems(plan, nodes)


def _render_summary(summary: dict, diff=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"plan: {summary['experiment']}", title_justify="left")
    table.add_column("jobs")
    table.add_column("count", justify="right")
    table.add_column("GPUs", justify="right")
    table.add_column("GPU-hours", justify="right")
    for kind, row in summary["kinds"].items():
        table.add_row(KIND_LABELS.get(kind, kind), str(row["jobs"]), str(row["gpus"]), f"{row['gpu_hours']:g}")
    table.add_row("total", str(summary["jobs"]), "", f"{summary['gpu_hours']:g}", style="bold")
    console.print(table)
    ch = summary.get("changes")
    if ch:
        console.print(f"changes since the last plan: [green]{ch['added']} added[/], [yellow]{ch['changed']} changed[/], "
                      f"[red]{ch['removed']} removed[/], {ch['unchanged']} unchanged")
        _render_changes(console, diff, summary.get("changed_settings") or {})
    slurm = summary.get("slurm")
    if slurm and "error" in slurm:
        console.print(f"[dim]SLURM limits not read: {slurm['error']}[/]", highlight=False)
    elif slurm:
        arrays = f"{slurm['arrays']} job arrays" + (f" and {slurm['plain_jobs']} plain jobs" if slurm["plain_jobs"] else "")
        size = f"MaxArraySize {slurm['max_array_size']}" if slurm["max_array_size"] else "job arrays off"
        console.print(f"SLURM: {slurm['jobs']} jobs in {slurm['submissions']} sbatch calls ({arrays}; {size})",
                      highlight=False, soft_wrap=True)
    _render_estimate(console, summary.get("estimate"))
    console.print(f"wrote {summary['output_dir']}/plan.json — next: cruijff apply {summary['output_dir']}",
                  soft_wrap=True, highlight=False)


def _render_changes(console, diff, details: dict, groups_shown: int = 12) -> None:
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


def _render_estimate(console, est: dict | None) -> None:
    """One line of totals, then the basis of every number (see cruijff/compiler/estimate.py)."""
    from cruijff.compiler.estimate import human_bytes

    if not est or (not est["runs"] and not est["not_estimated"]):
        return
    if est["runs"]:
        console.print(f"estimate for {len(est['runs'])} fine-tune run{'s' if len(est['runs']) != 1 else ''}: "
                      f"{est['gpu_hours']:.3g} GPU-hours, {human_bytes(est['disk_bytes'])} disk", highlight=False)
        for basis in est["basis"]:
            console.print(f"  basis: {basis}", highlight=False, soft_wrap=True)
        console.print(f"  method: {est['method']}", highlight=False, soft_wrap=True)
    if est["not_estimated"]:
        console.print(f"  not estimated ({len(est['not_estimated'])} runs): their data does not exist yet "
                      "(generated by a prepare job) or the model size is unknown; plan again once it exists",
                      highlight=False, soft_wrap=True)


@click.command()
def schema() -> None:
    """Print the manifest JSON Schema (for editors: yaml-language-server $schema)."""
    from cruijff.compiler.schema import schema_path

    click.echo(schema_path().read_text(), nl=False)
