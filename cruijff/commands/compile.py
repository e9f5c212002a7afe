"""`cruijff validate`, `cruijff plan`, `cruijff schema`: the compiler's commands."""

from __future__ import annotations

import sys

import click

from cruijff.commands import draw
from cruijff.commands.jsonout import emit, errors
from cruijff.errors import ManifestError


def _fail(e: ManifestError, as_json: bool, kind: str = "validate") -> None:
    """A rejected manifest: every problem, as `cruijff.<kind>` with ok false under --json; exit 2."""
    if as_json:
        emit(kind, {"ok": False, "errors": [p.as_dict() for p in e.problems],
                    "warnings": [p.as_dict() for p in e.warnings]})
    else:
        draw.manifest_failed(e.problems, e.warnings, writes=kind != "validate")
    sys.exit(int(e.exit_code))


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(manifest: str, as_json: bool) -> None:
    """Check MANIFEST against the schema and the semantic rules; print every problem at once."""
    from cruijff.compiler.pipeline import check

    with errors("validate", as_json):
        try:
            checked = check(manifest)
        except ManifestError as e:
            _fail(e, as_json)
    if as_json:
        emit("validate", {"ok": True, "runs": len(checked.runs), "errors": [],
                          "warnings": [p.as_dict() for p in checked.warnings]})
        return
    draw.validated(manifest, len(checked.runs), checked.warnings)


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Plan (and output) directory; default: output_dir.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--refresh-cluster", is_flag=True,
              help="Ask SLURM for its limits and partitions again instead of using the cached answers.")
def plan(manifest: str, out: str | None, as_json: bool, refresh_cluster: bool) -> None:
    """Compile MANIFEST into a plan directory: configs, job scripts and plan.json."""
    from pathlib import Path

    from cruijff.compiler.pipeline import compile_manifest
    from cruijff.compiler.summary import plan_summary, setting_changes
    from cruijff.compiler.write import previous_plan, write_plan

    with errors("plan", as_json):
        try:
            compiled = compile_manifest(manifest, out=out)
        except ManifestError as e:
            _fail(e, as_json, "plan")
        root = Path(compiled.plan.output_dir)
        old = previous_plan(root)
        # Read before write_plan replaces them: the old rendered files say which settings changed.
        details = setting_changes(old, compiled.plan, compiled.files, lambda rel: _read(root / rel)) if old else {}
        diff = write_plan(compiled.plan, compiled.files)
    summary = plan_summary(compiled.plan, diff)
    summary["changed_settings"] = details
    warnings = list(compiled.checked.warnings)
    summary["slurm"], fit = _slurm_fit(compiled.plan, compiled.files, refresh=refresh_cluster)
    from cruijff.compiler.estimate import estimate_plan  # GPU-hours and disk from the data (no torch)

    summary["estimate"] = estimate_plan(compiled.checked.manifest, compiled.plan)
    warnings += fit
    if as_json:
        summary["warnings"] = [p.as_dict() for p in warnings]
        summary["diff"] = {**diff.as_dict(), "settings": summary.pop("changed_settings")}
        emit("plan", {"ok": True, **summary})
        return
    draw.problems(warnings)
    draw.plan_summary(summary, diff)


def _read(path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _slurm_fit(plan, files: dict[str, str], *, refresh: bool = False):
    """Where the plan will go to SLURM: how it is submitted and whether it fits the user's limits.

    The cluster's facts come from cruijff.run.executors.slurm.facts: cached per cluster, asked side
    by side, sacctmgr under a short timeout (then the submit limit is "not checked")."""
    from cruijff.errors import CruijffError, Problem
    from cruijff.run.executors.select import make_executor, resolve_name
    from cruijff.run.executors.slurm.facts import cluster_facts
    from cruijff.run.executors.slurm.limits import DEFAULT_MAX_ARRAY_SIZE
    from cruijff.compiler.capacity import SINFO_NODE_FORMAT, fit_problems, parse_sinfo_nodes, resource_problems, submission_layout

    if resolve_name(None, plan) != "slurm":
        return None, []
    try:
        executor = make_executor("slurm", plan)
        facts = cluster_facts(SINFO_NODE_FORMAT, refresh=refresh)
    except CruijffError as e:
        return {"error": e.message}, []
    limits = facts.limits(account=executor.account, qos=executor.qos)
    size = limits.get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE) if executor.arrays else 0
    nodes = parse_sinfo_nodes(facts.sinfo)
    layout = submission_layout(plan, files, size)
    layout["limits"] = {k: (v[0] if isinstance(v, tuple) else v) for k, v in limits.items()}
    layout["cluster_facts"] = {"read_at": facts.read_at, "cached": facts.cached, "not_checked": facts.not_checked}
    notes = [Problem(f"{line}; plan goes on (`cruijff plan --refresh-cluster` asks again)", severity="warning")
             for line in facts.not_checked]
    return layout, notes + fit_problems(len(plan.nodes), limits) + resource_problems(plan, nodes)


@click.command()
def schema() -> None:
    """Print the manifest JSON Schema (for editors: yaml-language-server $schema)."""
    from cruijff.compiler.schema import schema_path

    click.echo(schema_path().read_text(), nl=False)
