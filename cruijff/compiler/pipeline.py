"""The compiler pipeline: load → validate → resolve → expand → check → graph → render.

`compile_manifest` is pure apart from reading the manifest and the files it checks; writing the
plan directory is cruijff.compiler.write's job.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any


from cruijff.compiler.batching import header_shape
from cruijff.compiler.write import text_size
from cruijff.cores import in_background
from cruijff.compiler.checkpoints import trainable_models
from cruijff.compiler.checks import check_files, check_models, check_references, check_runs, check_steps, hyperparameters_of
from cruijff.errors import ManifestError, Problem
from cruijff.compiler.expand import Run, expand
from cruijff.compiler.naming import name_runs
from cruijff.compiler.graph import JobSpec, build_graph
from cruijff.compiler.inputs import code_digest, fingerprint
from cruijff.compiler.nodekeys import NodeKeys
from cruijff.compiler.prerender import render_ahead
from cruijff.plan import BASE_EVAL, CHECKPOINT_EVAL, EVAL, EVAL_KINDS, FINETUNE, PREPARE, Node, Plan, PlanText, read_plan_text
from cruijff.paths import recipes_dir
from cruijff.compiler.render import inspect as render_inspect
from cruijff.compiler.render import torchtune as render_torchtune
from cruijff.compiler.render.sbatch import UnsafeValue, job_script
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.compiler.resolve import resolve
from cruijff.compiler.source import Source, load, to_plain
from cruijff.compiler import cells, render_cache, token_fit
from cruijff.compiler.taskfile import task_signature
from cruijff.compiler.validate import schema_problems


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
    store_settings: str = "{}"  # store-settings.json's text: each node's store-key settings, compact sorted JSON
    # With reuse: the plan.json this plan replaces; the nodes kept as it has them (node id → its
    # files' sizes: they are on disk, nothing to write) and their lines there; every keyed node's
    # job script header shape (cruijff.compiler.batching.header_shape).
    previous: PlanText | None = None
    kept: dict[str, dict[str, int]] = field(default_factory=dict)
    lines: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[str, ...]] = field(default_factory=dict)


def check(path: str | Path, *, out: str | None = None, env: dict[str, str] | None = None,
          check_paths: bool = True, measure: token_fit.Runner | None = None,
          overrides: tuple[str, ...] | list[str] = ()) -> Checked:
    """Load and check a manifest; every error at once as a ManifestError.

    measure: how token lengths are measured (cruijff.compiler.token_fit; tests pass a fake).
    overrides: `--set KEY=VALUE` arguments, applied to the loaded document before validation.
    """
    source = load(path)
    applied: tuple = ()
    if overrides:
        from cruijff.compiler import overrides as overriding

        applied = tuple(overriding.apply(source, overrides))
    problems = schema_problems(source)
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
                     reuse: bool = False) -> Compiled:
    """reuse: keep every node the plan on disk has as this plan renders it, instead of rendering it
    (cruijff.compiler.render_cache); `plan` saves Compiled.rendered after writing the plan."""
    checked = check(path, out=out, env=env, check_paths=check_paths, measure=measure, overrides=overrides)
    m = checked.manifest
    g = build_graph(m, checked.runs)
    order = {node_id: i for i, node_id in enumerate(g.specs)}
    runs = {r.name: r for r in checked.runs}
    renderer = _Renderer(m, runs, recipes or str(recipes_dir()), check_paths=check_paths)
    ctx = render_cache.context(m, renderer.recipes, check_paths, renderer.model_facts()) if reuse else ""
    on_disk = read_plan_text(m["output_dir"]) if reuse else None
    previous = render_cache.load(m["output_dir"], ctx, on_disk.digest) if on_disk else {}
    entries: render_cache.Entries = {}
    kept: dict[str, dict[str, int]] = {}
    lines: dict[str, str] = {}
    shapes: dict[str, tuple[str, ...]] = {}
    files: dict[str, str] = {}
    nodes: list[Node] = []
    hashes: dict[str, str] = {}
    parents_of = {node_id: tuple(sorted(g.parents[node_id], key=order.__getitem__)) for node_id in g.specs}
    inputs_of = {node_id: renderer.inputs(spec) for node_id, spec in g.specs.items()}
    ahead = {} if previous else render_ahead(renderer, list(g.specs.values()), parents_of, inputs_of)
    # whose files are no longer on disk as the last plan wrote them: 14,000 stats for 5,000 nodes,
    # side by side with the loop
    missing = in_background(partial(render_cache.missing, m["output_dir"], previous),
                            fork=len(previous) >= BACKGROUND_FROM)
    try:
        for node_id, spec in g.specs.items():  # parents first
            parents, inputs = parents_of[node_id], inputs_of[node_id]
            key = render_cache.node_key(spec, parents, [hashes[p] for p in parents],
                                        renderer.keys.parent_keys(parents), inputs) if reuse and spec.kind != PREPARE else None
            hit = previous.get(node_id) if key else None
            if hit is not None and hit[0] == key:  # as the plan on disk has it: nothing to render or write
                entries[node_id] = hit
                _, kept[node_id], hashes[node_id], near, store_key, text, shapes[node_id] = hit
                renderer.keys.adopt(spec, parents, near, store_key, text)
                lines[node_id] = on_disk.line(node_id)
            else:
                if node_id in ahead:
                    node_files, normalised, text = ahead[node_id]
                    hashes[node_id] = _node_hash(spec, inputs, [hashes[p] for p in parents], node_files)
                    renderer.keys.add_normalised(spec, parents, normalised, text)
                else:
                    node_files, hashes[node_id] = _render_node(renderer, spec, checked.source, inputs,
                                                               [hashes[p] for p in parents])
                    renderer.keys.add(spec, parents, inputs, renderer.take_settings(spec.id))
                if key:
                    shapes[node_id] = header_shape(node_files["job.sbatch"])
                    entries[node_id] = (key, {rel: text_size(t) for rel, t in node_files.items()}, hashes[node_id],
                                        *renderer.keys.stored(node_id), shapes[node_id])
                files.update({f"{node_id}/{rel}": t for rel, t in node_files.items()})
            nodes.append(Node(id=node_id, kind=spec.kind, parents=parents, resources=spec.resources,
                              hash=hashes[node_id], attrs=spec.attrs, inputs=inputs))
    finally:
        gone = missing()
    for node_id in sorted(gone & kept.keys(), key=order.__getitem__):  # deleted or edited since: written again
        del kept[node_id]
        files.update({f"{node_id}/{rel}": t for rel, t in renderer.render(g.specs[node_id]).items()})
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
    return Compiled(plan, files, checked, renderer.keys.document(), (ctx, entries), renderer.keys.settings_document(),
                    on_disk, kept, lines, shapes)


BACKGROUND_FROM = 1000  # nodes from which side work gets a process of its own (cruijff.cores.in_background)


def _render_node(renderer: _Renderer, spec: JobSpec, source: Source, inputs: dict[str, str],
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


class _Renderer:
    """Turns one JobSpec into its files; the job script always comes last (it names the others)."""

    def __init__(self, m: dict[str, Any], runs: dict[str, Run], recipes: str, *, check_paths: bool = True):
        self.m = m
        self.check_paths = check_paths
        self.runs = runs
        self.recipes = recipes
        self.out = m["output_dir"]
        self.variables = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        wandb = m["finetune"].get("wandb")
        if wandb:
            self.variables["WANDB_MODE"] = wandb["mode"]

        self._fingerprints: dict[str, str] = {}
        self._settings: dict[str, dict[str, Any]] = {}  # node id → what decides its result (render's data)
        self.keys = NodeKeys(m, recipes, self._fingerprint)
        self._task_configs: dict[tuple[str, str], str] = {}  # (task, dataset) → its task_config.yaml
        self._signatures: dict[tuple[str, str], Any] = {}  # (file, @task) → its interface: one stat per compile
        self._inputs: dict[tuple, dict[str, str]] = {}  # (kind, gpus, dataset, task) → inputs

    def inputs(self, spec: JobSpec) -> dict[str, str]:
        """What the job reads beyond its rendered files: name → fingerprint (see cruijff.compiler.inputs);
        the same for every job of a kind, GPU count, dataset and task."""
        what = (spec.kind, spec.resources.gpus, spec.attrs.get("eval_dataset", spec.attrs.get("dataset")),
                spec.attrs.get("task"))
        if what not in self._inputs:
            self._inputs[what] = self._inputs_of(spec)
        return dict(self._inputs[what])

    def _inputs_of(self, spec: JobSpec) -> dict[str, str]:
        out = {"cruijff code": code_digest(spec.kind)}
        if spec.kind == FINETUNE:
            out["recipe"] = self._fingerprint(os.path.join(self.recipes, render_torchtune.recipe_file(spec.resources.gpus)))
        dataset = spec.attrs.get("eval_dataset", spec.attrs.get("dataset"))
        if spec.kind != PREPARE and "generate" not in self.m["datasets"][dataset]:
            out["dataset"] = self._fingerprint(self.m["datasets"][dataset]["path"])
        if spec.kind in EVAL_KINDS:
            task = next(t for t in self.m["eval"]["tasks"] if t["name"] == spec.attrs["task"])
            out["task file"] = self._fingerprint(task["file"])
        return out

    def model_facts(self) -> dict[str, Any]:
        """What rendering reads of each model's folder: its fingerprint (store keys) and whether it
        is reachable here (the job's preflight check)."""
        folders = {f for model in self.m["models"].values() for f in (model.get("path"), model.get("checkpoint")) if f}
        return {f: [self._fingerprint(f), os.path.isdir(f)] for f in sorted(folders)}

    def take_settings(self, node_id: str) -> dict[str, Any]:
        """What decides the node's result, as render left it (the store key's data)."""
        return self._settings.pop(node_id, {})

    def _fingerprint(self, path: str) -> str:
        if path not in self._fingerprints:
            self._fingerprints[path] = fingerprint(path)
        return self._fingerprints[path]

    def preflight(self, model_name: str) -> list[list[str]]:
        """A first command that checks a model folder plan could not see (cruijff.preflight); else none."""
        from cruijff.compiler.checkpoints import CHECKPOINT_CONFIGS
        from cruijff.compiler.modelfiles import Needs, needs

        model = self.m["models"][model_name]
        path = model.get("checkpoint", model.get("path"))
        if not self.check_paths or os.path.isdir(path):
            return []
        need = Needs((), CHECKPOINT_CONFIGS) if "checkpoint" in model else needs(model)
        return [["python", "-m", "cruijff.preflight", "model", model_name, path, *need.files, "--any", *need.any_of]]

    def _task_config(self, task: dict[str, Any], name: str, dataset: dict[str, Any], prompt: dict[str, Any]) -> str:
        """The same for every evaluation of a task on a dataset with a prompt: rendered once."""
        key = (task["name"], name, *(prompt[k] for k in cells.PROMPT_KEYS))
        if key not in self._task_configs:
            self._task_configs[key] = dump_yaml(render_inspect.task_config(dataset=dataset, prompt=prompt, task=task))
        return self._task_configs[key]

    def render(self, spec: JobSpec) -> dict[str, str]:
        return {PREPARE: self.prepare, FINETUNE: self.finetune, EVAL: self.evaluation,
                BASE_EVAL: self.evaluation, CHECKPOINT_EVAL: self.evaluation}[spec.kind](spec)

    def _script(self, spec: JobSpec, title: str, commands: list[list[str]]) -> str:
        resume = self.m["finetune"].get("resume", {}) if spec.kind == FINETUNE else None
        return job_script(title=title, job_name=f"{self.m['experiment']}:{spec.id}",
                          node_dir=f"{self.out}/{spec.id}", resources=spec.resources,
                          cluster=self.m["cluster"], commands=commands, variables=self.variables,
                          resume=resume)

    def prepare(self, spec: JobSpec) -> dict[str, str]:
        from cruijff.data.generate import cli_args

        ds = self.m["datasets"][spec.attrs["dataset"]]
        argv = ["cruijff", "data", "generate", *cli_args(ds["generate"]["kind"], ds["path"], ds["generate"])]
        self._settings[spec.id] = {"generate": {k: (self._fingerprint(v) if isinstance(v, str) and os.path.isfile(v)
                                                    else v) for k, v in ds["generate"].items()},
                                   "format": ds.get("format")}
        return {"job.sbatch": self._script(spec, f"cruijff job {spec.id}: generate dataset {spec.attrs['dataset']}", [argv])}

    def finetune(self, spec: JobSpec) -> dict[str, str]:
        run = self.runs[spec.attrs["run"]]
        hp = hyperparameters_of(self.m, run)
        run_dir = f"{self.out}/{spec.id}"
        config = render_torchtune.finetune_config(
            manifest={**self.m, "prompt": cells.run_prompt(self.m, run)}, run_name=run.name,
            model=self.m["models"][run.model],
            dataset=self.m["datasets"][run.dataset], hp=hp, save_epochs=spec.attrs["save_epochs"],
            resources=spec.resources, run_dir=run_dir)
        gpus = spec.resources.gpus
        recipe = render_torchtune.recipe_file(gpus)
        config_path = f"{run_dir}/finetune.yaml"
        # torchtune 0.6.1 imports a custom recipe as a module found from the working directory.
        commands = [*self.preflight(run.model), ["cd", self.recipes],
                    ["tune", "run", *(["--nproc_per_node", str(gpus)] if gpus > 1 else []), recipe, "--config", config_path]]
        text = dump_yaml(config, header=render_torchtune.header(run.name, self.recipes, recipe, config_path, gpus))
        self._settings[spec.id] = {"config": config, "recipe": recipe}
        title = f"cruijff job {spec.id}: LoRA fine-tune of {run.model} on {run.dataset}"
        return {"finetune.yaml": text, "job.sbatch": self._script(spec, title, commands)}

    def evaluation(self, spec: JobSpec) -> dict[str, str]:
        ev = self.m["eval"]
        task = next(t for t in ev["tasks"] if t["name"] == spec.attrs["task"])
        model = self.m["models"][spec.attrs["model"]]
        if spec.kind == EVAL:
            model_dir = render_torchtune.evaluated_dir(f"{self.out}/{FINETUNE}/{spec.attrs['run']}", spec.attrs["epoch"],
                                                       self.m["finetune"].get("export", render_torchtune.MERGED))
        elif spec.kind == CHECKPOINT_EVAL:
            model_dir = model["checkpoint"]
        else:
            model_dir = model["path"]
        dataset = self.m["datasets"][spec.attrs["eval_dataset"]]
        metadata = {"experiment": self.m["experiment"], "node": spec.id, "model": spec.attrs["model"],
                    "dataset": spec.attrs["eval_dataset"]}
        if spec.kind == EVAL:
            metadata.update({"run": spec.attrs["run"], "epoch": spec.attrs["epoch"]})
            metadata.update({f"hp.{k}": v for k, v in spec.attrs["grid"].items() if k not in ("model", "dataset")})
        run = self.runs[spec.attrs["run"]] if spec.kind == EVAL else None
        prompt = cells.task_prompt(self.m, task, cells.run_prompt(self.m, run))
        if "prompt" in task:
            metadata["eval_prompt"] = task["prompt"] if isinstance(task["prompt"], str) else task["name"]
        if "cross_prompt" in spec.attrs:
            metadata["cross_prompt"] = "true"
        if spec.kind == CHECKPOINT_EVAL:
            metadata["checkpoint"] = model_dir
        decoding = cells.decoding(ev, task)
        max_tokens = task.get("max_tokens", ev["max_tokens"])
        commands = render_inspect.eval_commands(task_file=task["file"], task_name=task["task"], model_dir=model_dir,
                                                provider=ev["provider"], seed=ev["seed"], limit=ev["limit"],
                                                max_tokens=max_tokens, metadata=metadata, decoding=decoding)
        if spec.kind != EVAL:
            commands = [*self.preflight(spec.attrs["model"]), *commands]
        model_cfg = render_inspect.model_config(model_dir=model_dir, gpus=spec.resources.gpus,
                                               provider=ev["provider"], style=prompt["style"],
                                               do_sample=bool(decoding.get("do_sample")))
        what = (f"epoch {spec.attrs['epoch']} of {spec.attrs['run']}" if spec.kind == EVAL else
                f"checkpoint {spec.attrs['model']}" if spec.kind == CHECKPOINT_EVAL else f"base model {spec.attrs['model']}")
        files: dict[str, str] = {}
        if (task["file"], task["task"]) not in self._signatures:
            self._signatures[task["file"], task["task"]] = task_signature(task["file"], task["task"])
        signature = self._signatures[task["file"], task["task"]]
        kit_config = None
        if signature.interface == render_inspect.KIT_TASK:  # cruijff_kit's task, run unchanged
            config_path = f"{self.out}/{spec.id}/{render_inspect.KIT_CONFIG_FILE}"
            kit_config = render_inspect.kit_eval_config(prompt=prompt)
            task_config = render_inspect.kit_task_config(
                dataset=dataset, prompt=prompt, task=task, config_path=config_path,
                label=spec.attrs.get("run", spec.attrs["model"]), max_tokens=max_tokens, accepted=signature.accepted,
                temperature=decoding.get("temperature", 0) if decoding.get("do_sample") else 0)
            files[render_inspect.KIT_CONFIG_FILE] = dump_yaml(kit_config)
            files["task_config.yaml"] = dump_yaml(task_config)
        else:
            task_config = render_inspect.task_config(dataset=dataset, prompt=prompt, task=task)
            files["task_config.yaml"] = self._task_config(task, spec.attrs["eval_dataset"], dataset, prompt)
        self._settings[spec.id] = {
            "task": task["name"], "eval": {"task": task["task"], "provider": ev["provider"], "seed": ev["seed"],
                                           "limit": ev["limit"], "max_tokens": max_tokens,
                                           "epoch": spec.attrs.get("epoch"), "decoding": decoding},
            "task_config": task_config, "kit_config": kit_config, "model_config": model_cfg}
        return {
            **files,
            "model_config.yaml": dump_yaml(model_cfg),
            "job.sbatch": self._script(spec, f"cruijff job {spec.id}: evaluate {what} on {task['name']}", commands),
        }


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
            SETTINGS_FILE: compiled.store_settings + "\n"}
