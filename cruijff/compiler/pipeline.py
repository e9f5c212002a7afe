"""The compiler pipeline: load → validate → resolve → expand → check → graph → render.

`compile_manifest` is pure apart from reading the manifest and the files it checks; writing the
plan directory is cruijff.compiler.write's job.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from cruijff.compiler import cells, render_cache, token_fit
from cruijff.compiler.batching import header_shape
from cruijff.compiler.checkpoints import trainable_models
from cruijff.compiler.checks import check_files, check_models, check_references, check_runs, check_steps
from cruijff.compiler.expand import Run, expand
from cruijff.compiler.graph import JobSpec, build_graph
from cruijff.compiler.naming import name_runs
from cruijff.compiler.prerender import render_ahead
from cruijff.compiler.render.sbatch import UnsafeValue
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.compiler.renderer import Renderer
from cruijff.compiler.resolve import resolve
from cruijff.compiler.source import Source, to_plain
from cruijff.compiler.validate import load_checked
from cruijff.compiler.write import text_size
from cruijff.errors import ManifestError, Problem
from cruijff.paths import recipes_dir
from cruijff.plan import PREPARE, Node, Plan, PlanText, encode, read_plan_text

if TYPE_CHECKING:
    from cruijff.cores import Ahead


@dataclass(frozen=True)
class Checked:
    """A manifest that passed every check: resolved data, runs and warnings."""

    source: Source
    manifest: dict[str, Any]
    runs: list[Run]
    warnings: list[Problem]
    token_fit: dict[str, Any] = field(default_factory=dict)  # measurements to cache in the plan dir
    overrides: tuple = ()  # the `--set`s applied (cruijff.compiler.overrides.Override)


@dataclass(frozen=True)
class Compiled:
    plan: Plan
    files: dict[str, str]  # path relative to output_dir → text (with reuse: of the nodes not kept)
    checked: Checked
    store: dict[str, Any] = field(default_factory=dict)  # store-keys.json's document (cruijff.store.keys)
    rendered: tuple[str, dict] = ("", {})  # (context, entries) for the next plan (cruijff.compiler.render_cache)
    store_settings: str = "{}\n"  # store-settings.json's text: each node's store-key settings, compact sorted JSON
    # With reuse: the plan.json this plan replaces; the nodes kept as it has them (node id → its
    # files' sizes: they are on disk, nothing to write; their lines there are theirs in the new
    # plan.json); every keyed node's job script header shape (cruijff.compiler.batching.header_shape).
    previous: PlanText | None = None
    kept: dict[str, dict[str, int]] = field(default_factory=dict)
    shapes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def plan_json(self) -> bytes:
        """plan.json's bytes, the kept nodes' lines copied from the plan.json this plan replaces."""
        return encode(self.plan, self.previous, self.kept)


def check(path: str | Path, *, out: str | None = None, env: dict[str, str] | None = None,
          check_paths: bool = True, measure: token_fit.Runner | None = None,
          overrides: tuple[str, ...] | list[str] = (), loading: Ahead | None = None) -> Checked:
    """Load and check a manifest; every error at once as a ManifestError.

    measure: how token lengths are measured (cruijff.compiler.token_fit; tests pass a fake).
    overrides: `--set KEY=VALUE` arguments, applied to the loaded document before validation.
    loading: load_checked of this manifest and overrides, running in a child (validate.ahead).
    """
    done = loading.result() if loading is not None else None
    source, applied, problems = done or load_checked(path, overrides)
    if problems:
        raise ManifestError(problems)
    manifest, problems = resolve(source, to_plain(source.data), env)
    if out is not None:
        manifest["output_dir"] = os.path.abspath(out)
    problems += check_models(source, manifest)
    problems += check_references(source, manifest)
    problems += cells.check_prompts(source, manifest)
    problems += cells.check_decoding(source, manifest)
    runs: list[Run] = []
    if not any(p.severity == "error" for p in problems):
        trainable = trainable_models(manifest)  # a checkpoint model is evaluated only
        runs, expansion = expand(manifest["grid"], trainable, list(manifest["datasets"]))
        problems += [Problem(p.message, source.locate(list(origin)), p.hint) for origin, p in expansion]
        runs, naming = name_runs(manifest["finetune"].get("run_name"), runs, manifest, source.locate)
        problems += naming
        if not runs and not expansion and trainable:
            problems.append(Problem("the grid has no runs left (exclude removed every combination)",
                                    source.locate(["grid"]), "loosen grid.exclude or add values"))
        problems += check_runs(source, manifest, runs)
        if not any(p.severity == "error" for p in problems):
            problems += cells.check_matrix(source, manifest, runs)
    if check_paths:
        problems += check_files(source, manifest)
        problems += check_steps(source, manifest, runs)
    measured: dict[str, Any] = {}
    if check_paths and not any(p.severity == "error" for p in problems):
        fit, measured = token_fit.check_token_fit(source, manifest, runs, runner=measure,
                                                  cache=token_fit.read_cache(manifest["output_dir"]))
        problems += fit
    problems = sorted(problems, key=_file_order)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ManifestError(problems)
    return Checked(source, manifest, runs, [p for p in problems if p.severity != "error"], measured, applied)


def _file_order(p: Problem) -> tuple[int, int]:
    loc = p.location
    return (loc.line or 0, loc.col or 0) if loc else (0, 0)


def compile_manifest(path: str | Path, *, out: str | None = None, env: dict[str, str] | None = None,
                     recipes: str | None = None, check_paths: bool = True,
                     measure: token_fit.Runner | None = None, overrides: tuple[str, ...] | list[str] = (),
                     reuse: bool = False, loading: Ahead | None = None) -> Compiled:
    """reuse: keep every node the plan on disk has as this plan renders it, instead of rendering it
    (cruijff.compiler.render_cache); `plan` saves Compiled.rendered after writing the plan.
    loading: see `check`."""
    checked = check(path, out=out, env=env, check_paths=check_paths, measure=measure, overrides=overrides,
                    loading=loading)
    m = checked.manifest
    ahead = render_cache.check_ahead(m["output_dir"]) if reuse else None  # while the graph is built
    g = build_graph(m, checked.runs)
    order = {node_id: i for i, node_id in enumerate(g.specs)}
    runs = {r.name: r for r in checked.runs}
    renderer = Renderer(m, runs, recipes or str(recipes_dir()), check_paths=check_paths)
    ctx = render_cache.context(m, renderer.recipes, check_paths, renderer.model_facts()) if reuse else ""
    on_disk = read_plan_text(m["output_dir"]) if reuse else None
    previous, identity = render_cache.load(m["output_dir"], ctx, on_disk.digest) if on_disk else ({}, None)
    gone = render_cache.missing(m["output_dir"], previous, identity, ahead)  # deleted or edited since: rendered again
    entries: render_cache.Entries = {}
    kept: dict[str, dict[str, int]] = {}
    shapes: dict[str, tuple[str, ...]] = {}
    distinct: dict[tuple[str, ...], tuple[str, ...]] = {}  # each header shape once: the cache pickles it once
    files: dict[str, str] = {}
    nodes: list[Node] = []
    hashes: dict[str, str] = {}
    parents_of = {node_id: tuple(sorted(g.parents[node_id], key=order.__getitem__)) for node_id in g.specs}
    inputs_of = {node_id: renderer.inputs(spec) for node_id, spec in g.specs.items()}
    ahead = {} if previous else render_ahead(renderer, list(g.specs.values()), parents_of, inputs_of)
    for node_id, spec in g.specs.items():  # parents first
        parents, inputs = parents_of[node_id], inputs_of[node_id]
        key = render_cache.node_key(spec, parents, [hashes[p] for p in parents],
                                    renderer.keys.parent_keys(parents), inputs) if reuse and spec.kind != PREPARE else None
        hit = previous.get(node_id) if key else None
        if hit is not None and hit[0] == key and node_id not in gone:  # as on disk: nothing to render or write
            entries[node_id] = hit
            _, kept[node_id], hashes[node_id], near, store_key, text, shapes[node_id] = hit
            renderer.keys.adopt(spec, parents, near, store_key, text)
        else:
            if node_id in ahead:
                node_files, key_fields, text, shape = ahead[node_id]
                hashes[node_id] = _node_hash(spec, inputs, [hashes[p] for p in parents], node_files)
                renderer.keys.add_normalised(spec, parents, key_fields, text)
            else:
                node_files, hashes[node_id] = _render_node(renderer, spec, checked.source, inputs,
                                                           [hashes[p] for p in parents])
                renderer.keys.add(spec, parents, inputs, renderer.take_settings(spec.id))
                shape = None
            if key:
                shape = header_shape(node_files["job.sbatch"]) if shape is None else shape
                shapes[node_id] = distinct.setdefault(shape, shape)
                entries[node_id] = (key, {rel: text_size(t) for rel, t in node_files.items()}, hashes[node_id],
                                    *renderer.keys.stored(node_id), shapes[node_id])
            files.update({f"{node_id}/{rel}": t for rel, t in node_files.items()})
        nodes.append(Node(id=node_id, kind=spec.kind, parents=parents, resources=spec.resources,
                          hash=hashes[node_id], attrs=spec.attrs, inputs=inputs))
    plan = Plan(
        experiment=m["experiment"],
        output_dir=m["output_dir"],
        manifest=str(checked.source.path.resolve()),
        executor=m["executor"]["kind"],
        max_parallel=m["executor"]["max_parallel"],
        cluster={k: v for k, v in m["cluster"].items() if k != "env"},
        nodes=tuple(nodes),
    )
    if checked.token_fit:  # written with the plan, so a failed plan writes nothing
        files[token_fit.CACHE_FILE] = token_fit.cache_text(checked.token_fit)
    header = [f"Resolved from {checked.source.path.resolve()} by `cruijff plan`."]
    if checked.overrides:
        from cruijff.compiler.overrides import provenance

        header += provenance(checked.overrides)
    files["manifest.yaml"] = dump_yaml(m, header=header)
    return Compiled(plan, files, checked, renderer.keys.document(), (ctx, entries), renderer.keys.settings_file(),
                    on_disk, kept, shapes)


def _render_node(renderer: Renderer, spec: JobSpec, source: Source, inputs: dict[str, str],
                 parent_hashes: list[str]) -> tuple[dict[str, str], str]:
    """A node's files and its hash."""
    try:
        node_files = renderer.render(spec)
    except UnsafeValue as e:
        raise ManifestError([Problem(str(e), source.locate(list(e.where)),
                                     "use plain words for SLURM settings")]) from None
    return node_files, _node_hash(spec, inputs, parent_hashes, node_files)


def _node_hash(spec: JobSpec, inputs: dict[str, str], parent_hashes: list[str], node_files: dict[str, str]) -> str:
    """Its kind, resources, parents' hashes, inputs and files' text."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"kind": spec.kind, "resources": vars(spec.resources),
                              "parents": parent_hashes, "inputs": inputs}, sort_keys=True).encode())
    for rel in sorted(node_files):
        digest.update(rel.encode() + b"\0" + node_files[rel].encode() + b"\0")
    return digest.hexdigest()[:16]


def compile_to_dir(path: str | Path, *, out: str | None = None, overrides: tuple[str, ...] | list[str] = ()) -> Path:
    """Plan a manifest into its plan directory (what `cruijff apply MANIFEST` does first)."""
    from cruijff.compiler.write import write_plan

    compiled = compile_manifest(path, out=out, overrides=overrides)
    write_plan(compiled.plan, with_store_keys(compiled))
    return Path(compiled.plan.output_dir)


def with_store_keys(compiled: Compiled) -> dict[str, str]:
    """The files to write: the plan's, store-keys.json (what `plan` and `apply` look up in the store)
    and store-settings.json (6 MB for 5,000 nodes: read only to explain a miss or to publish)."""
    from cruijff.store.keys import KEYS_FILE, SETTINGS_FILE

    return {**compiled.files, KEYS_FILE: json.dumps(compiled.store, sort_keys=True, separators=(",", ":")) + "\n",
            SETTINGS_FILE: compiled.store_settings}
