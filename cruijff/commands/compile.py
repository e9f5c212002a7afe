"""`cruijff validate`, `cruijff plan`, `cruijff schema`: the compiler's commands."""

from __future__ import annotations

import sys
from pathlib import Path

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


SET_HELP = ("Override a manifest value: KEY.PATH=VALUE, the value read as YAML (1, 3e-4, null, [4, 8], "
            "{gpus: 0}); repeatable, e.g. --set finetune.hyperparameters.epochs=1 --set eval.limit=20.")
set_option = click.option("--set", "sets", metavar="KEY=VALUE", multiple=True, help=SET_HELP)


@click.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def validate(manifest: str, sets: tuple[str, ...], as_json: bool) -> None:
    """Check MANIFEST against the schema and the semantic rules; print every problem at once."""
    from cruijff.compiler.pipeline import check

    with errors("validate", as_json):
        try:
            checked = check(manifest, overrides=sets)
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
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--refresh-cluster", is_flag=True,
              help="Ask SLURM for its limits and partitions again instead of using the cached answers.")
@click.option("--no-store", is_flag=True, help="Do not look the nodes up in the results store (docs/store.md).")
def plan(manifest: str, out: str | None, sets: tuple[str, ...], as_json: bool, refresh_cluster: bool,
         no_store: bool) -> None:
    """Compile MANIFEST into a plan directory: configs, job scripts and plan.json."""
    import gc

    # A plan makes millions of short-lived objects with next to no reference cycles: the cycle
    # collector's passes found nothing and cost 0.1 s of a 5,000-job plan (7 %).
    gc.disable()
    try:
        _plan(manifest, out, sets, as_json, refresh_cluster, no_store)
    finally:
        gc.enable()


def _plan(manifest: str, out: str | None, sets: tuple[str, ...], as_json: bool, refresh_cluster: bool,
          no_store: bool) -> None:
    from pathlib import Path

    from cruijff.compiler import replan

    with errors("plan", as_json):
        last = replan.unchanged(manifest, out, sets)
        if last is not None:  # nothing plan reads changed: unless a plan file did, the plan on disk is this plan
            stamp = last.stamp  # what it shows is made ready while its files are checked
            try:
                store = _store(stamp["summary"]["output_dir"], stamp["cluster"], no_store, stamp["estimate"])
                slurm, failed = _slurm_fit_again(stamp, refresh_cluster), None
            except Exception as e:  # noqa: BLE001 - e.g. plan.json deleted: raised only if the files are intact
                failed = e
            if not as_json:
                draw.ready()
            if last.files_intact():
                if failed is not None:
                    raise failed
                stamp["store"] = store
                _show(stamp, _unchanged_diff(stamp["ids"]), {}, as_json, slurm)
                return
        from cruijff.compiler import validate  # neither ruamel nor jsonschema: the child loads them

        loading = validate.ahead(manifest, sets)  # on another core, while plan loads what it uses
        from cruijff.compiler.pipeline import compile_manifest, with_store_keys
        from cruijff.compiler.summary import plan_summary, setting_changes
        from cruijff.compiler.write import write_plan

        _ready_to_compile(as_json)
        replan.forget(manifest, out)
        try:
            compiled = compile_manifest(manifest, out=out, overrides=sets, reuse=True, loading=loading)
        except ManifestError as e:
            _fail(e, as_json, "plan")
        root = Path(compiled.plan.output_dir)
        old = compiled.previous  # the plan.json there now
        # Read before write_plan replaces them: the old rendered files say which settings changed.
        details = setting_changes(old, compiled.plan, compiled.files, lambda rel: _read(root / rel)) if old else {}
        files = with_store_keys(compiled)
        plan_json = compiled.plan_json()
        diff = write_plan(compiled.plan, files, old, plan_json)
    from cruijff.compiler.capacity import resource_groups
    from cruijff.compiler.estimate import estimate_plan  # GPU-hours and disk from the data (no torch)

    summary = plan_summary(compiled.plan, None)
    if compiled.checked.overrides:  # what --set changed, as manifest.yaml's header records it
        from cruijff.compiler.overrides import provenance

        summary["overrides"] = [line.strip() for line in provenance(compiled.checked.overrides)[1:]]
    groups = resource_groups(compiled.plan)
    shown = {"summary": summary, "ids": [n.id for n in compiled.plan.nodes],
             "warnings": [p.as_dict() for p in compiled.checked.warnings],
             "estimate": estimate_plan(compiled.checked.manifest, compiled.plan),
             "cluster": compiled.plan.cluster, "executor": compiled.plan.executor,
             "groups": [[k, m, r.as_dict(), n] for (k, m, r), n in groups.items()],
             "layouts": {}}
    slurm, fit = _slurm_fit(compiled.plan, compiled.files, refresh=refresh_cluster, shapes=compiled.shapes,
                            groups=groups)
    if slurm and "error" not in slurm:
        shown["layouts"][str(slurm["max_array_size"])] = {k: slurm[k] for k in LAYOUT_KEYS}
    _remember(manifest, out, sets, compiled, files, plan_json, shown)  # the caches the next plan starts from
    shown["store"] = _store(compiled.plan.output_dir, compiled.plan.cluster, no_store, shown["estimate"],
                            compiled.store)
    _show(shown, diff, details, as_json, (slurm, fit))


# What a plan that compiles imports after the compile: the writers' threads, the summary's
# capacity and estimate, the SLURM layout's facts and limits, the store lookup.
USED_AFTER_COMPILE = ("concurrent.futures.thread", "cruijff.compiler.capacity", "cruijff.compiler.estimate",
                      "cruijff.run.executors.select", "cruijff.run.executors.slurm.facts",
                      "cruijff.run.executors.slurm.limits", "cruijff.store.reuse")


def _ready_to_compile(as_json: bool) -> None:
    """Load USED_AFTER_COMPILE (~20 ms) and rich (~30 ms) while the manifest is parsed and
    validated on another core: that time is the child's anyway."""
    from importlib import import_module

    for name in USED_AFTER_COMPILE:
        import_module(name)
    if not as_json:
        draw.ready()


def _remember(manifest: str, out: str | None, sets: tuple[str, ...], compiled, files: dict[str, str],
              plan_json: bytes, shown: dict) -> None:
    """For the next plan: the render cache of this plan directory (beside the plan.json written), and
    the stamp that lets a plan of the same manifest with nothing changed skip compiling (both best
    effort)."""
    from cruijff.compiler import render_cache, replan
    from cruijff.compiler.token_fit import NOT_MEASURED
    from cruijff.compiler.write import text_size
    from cruijff.paths import recipes_dir
    from cruijff.plan import PLAN_FILE, plan_digest

    render_cache.save(compiled.plan.output_dir, *compiled.rendered, plan_digest(plan_json))
    if any(w["message"].startswith(NOT_MEASURED) for w in shown["warnings"]):
        return  # measured next time
    # the sizes just written, plan.json's included (14,000 stats less for 5,000 jobs)
    names, sizes = list(files), [text_size(t) for t in files.values()]
    for node_id, kept in compiled.kept.items():  # on disk at these sizes (checked by the compile)
        names += [f"{node_id}/{rel}" for rel in kept]
        sizes += kept.values()
    sizes.append(len(plan_json))
    replan.record(manifest, out, compiled.checked.manifest, str(recipes_dir()), compiled.plan.output_dir,
                  [*names, PLAN_FILE], shown, sets, sizes=sizes)


LAYOUT_KEYS = ("jobs", "submissions", "arrays", "plain_jobs", "max_array_size")


def _unchanged_diff(ids: list[str]):
    from cruijff.plan import PlanDiff

    return PlanDiff(added=(), changed=(), removed=(), unchanged=tuple(ids))


def _show(shown: dict, diff, details: dict, as_json: bool, slurm: tuple) -> None:
    """What plan prints: from a compile just done, or from the stamp of an unchanged plan
    (slurm: the layout and its warnings, from _slurm_fit or _slurm_fit_again)."""
    from cruijff.errors import Location, Problem

    summary = {**shown["summary"], "changes": {k: len(v) for k, v in diff.as_dict().items()}}
    summary["changed_settings"] = details
    warnings = [Problem(w["message"], Location(w["file"], w["line"], w["col"]) if w["file"] else None,
                        w["hint"], w["severity"]) for w in shown["warnings"]]
    summary["slurm"], fit = slurm
    summary["estimate"] = shown["estimate"]
    summary["store"] = shown.get("store")
    warnings += fit
    if as_json:
        summary["warnings"] = [p.as_dict() for p in warnings]
        summary["diff"] = {**diff.as_dict(), "settings": summary.pop("changed_settings")}
        # a big plan's JSON in one line: json's indenting encoder is pure Python (5,000 nodes looked
        # up in the store: seconds); the C encoder writes it at once
        emit("plan", {"ok": True, **summary}, compact=summary["jobs"] > 1000)
        return
    draw.problems(warnings)
    draw.plan_summary(summary, diff)


def _store(plan_dir: str, cluster: dict, no_store: bool, estimate: dict, keys: dict | None = None) -> dict | None:
    """Each node looked up in the results store: reused (from where), or why not (cruijff/store).
    keys: the store-keys.json just written (else it is read)."""
    from cruijff.store import open_store

    store = open_store(cluster.get("store"), no_store=no_store)
    if store is None:
        return None
    from cruijff.store.reuse import plan_lookup

    found = plan_lookup(store, plan_dir, keys)
    reused_runs = {i.split("/", 1)[1] for i in found["reused"] if i.startswith("finetune/")}
    found["estimated_gpu_hours_saved"] = float(f"{sum(r['gpu_hours'] for r in (estimate or {}).get('runs', []) if r['run'] in reused_runs):.6g}")
    return found


def _read(path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _cluster(plan, refresh: bool):
    """The cluster's facts for a plan going to SLURM: (facts, limits, MaxArraySize for its arrays),
    or None when it does not go to SLURM. Raises CruijffError when SLURM cannot be asked."""
    from cruijff.run.executors.select import make_executor, resolve_name
    from cruijff.run.executors.slurm.facts import cluster_facts
    from cruijff.run.executors.slurm.limits import DEFAULT_MAX_ARRAY_SIZE
    from cruijff.compiler.capacity import SINFO_NODE_FORMAT

    if resolve_name(None, plan) != "slurm":
        return None
    executor = make_executor("slurm", plan)
    facts = cluster_facts(SINFO_NODE_FORMAT, refresh=refresh)
    limits = facts.limits(account=executor.account, qos=executor.qos)
    return facts, limits, (limits.get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE) if executor.arrays else 0)


def _fit_layout(layout: dict, facts, limits: dict) -> tuple[dict, list]:
    """The layout with the limits and where they came from; a warning for each limit not checked."""
    layout = {**layout, "limits": {k: (v[0] if isinstance(v, tuple) else v) for k, v in limits.items()},
              "cluster_facts": {"read_at": facts.read_at, "cached": facts.cached, "not_checked": facts.not_checked}}
    return layout, [_not_checked(line) for line in facts.not_checked]


def _slurm_fit(plan, files: dict[str, str], *, refresh: bool = False, shapes: dict | None = None,
               groups: dict | None = None):
    """Where the plan will go to SLURM: how it is submitted and whether it fits the user's limits.

    The cluster's facts come from cruijff.run.executors.slurm.facts: cached per cluster, asked side
    by side, sacctmgr under a short timeout (then the submit limit is "not checked")."""
    from cruijff.errors import CruijffError
    from cruijff.compiler.capacity import fit_problems, parse_sinfo_nodes, resource_problems, submission_layout

    try:
        cluster = _cluster(plan, refresh)
    except CruijffError as e:
        return {"error": e.message}, []
    if cluster is None:
        return None, []
    facts, limits, size = cluster
    layout, notes = _fit_layout(submission_layout(plan, files, size, shapes), facts, limits)
    return layout, notes + fit_problems(len(plan.nodes), limits) + resource_problems(
        plan, parse_sinfo_nodes(facts.sinfo), groups=groups)


def _slurm_fit_again(shown: dict, refresh: bool):
    """_slurm_fit for an unchanged plan, from what its stamp kept (the plan is read only when the
    cluster's MaxArraySize changed since)."""
    from cruijff.errors import CruijffError
    from cruijff.plan import Plan, Resources
    from cruijff.compiler.capacity import fit_problems, parse_sinfo_nodes, resource_problems

    probe = Plan(experiment="", output_dir=shown["summary"]["output_dir"], manifest="", executor=shown["executor"],
                 max_parallel=1, cluster=shown["cluster"], nodes=())
    try:
        cluster = _cluster(probe, refresh)
    except CruijffError as e:
        return {"error": e.message}, []
    if cluster is None:
        return None, []
    facts, limits, size = cluster
    layout = shown["layouts"].get(str(size))
    if layout is None:
        from cruijff.compiler.capacity import submission_layout
        from cruijff.plan import load_plan

        plan = load_plan(shown["summary"]["output_dir"])
        layout = submission_layout(plan, _Scripts(plan.output_dir), size)
    layout, notes = _fit_layout(layout, facts, limits)
    groups = {(k, m, Resources(**r)): n for k, m, r, n in shown["groups"]}
    return layout, notes + fit_problems(len(shown["ids"]), limits) + resource_problems(
        None, parse_sinfo_nodes(facts.sinfo), cluster=shown["cluster"], groups=groups)


class _Scripts(dict):
    """Job scripts of a written plan, read when asked for."""

    def __init__(self, root: str):
        super().__init__()
        self.root = root

    def get(self, rel, default=None):
        text = _read(Path(self.root) / rel) if rel else None
        return default if text is None else text


def _not_checked(line: str):
    from cruijff.errors import Problem

    return Problem(f"{line}; plan goes on (`cruijff plan --refresh-cluster` asks again)", severity="warning")


@click.command()
def schema() -> None:
    """Print the manifest JSON Schema (for editors: yaml-language-server $schema)."""
    from cruijff.compiler.schema import schema_path

    click.echo(schema_path().read_text(), nl=False)
