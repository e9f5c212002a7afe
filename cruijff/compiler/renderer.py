"""One job spec → its files (configs, then the job script that names them), and what decides
its result (the store key's data); the inputs it reads beyond those files."""

from __future__ import annotations

import os
from typing import Any

from cruijff.compiler import cells
from cruijff.compiler.checks import hyperparameters_of
from cruijff.compiler.expand import Run
from cruijff.compiler.graph import JobSpec
from cruijff.compiler.inputs import code_digest, fingerprint
from cruijff.compiler.nodekeys import NodeKeys
from cruijff.compiler.render import inspect as render_inspect
from cruijff.compiler.render import torchtune as render_torchtune
from cruijff.compiler.render.sbatch import job_script
from cruijff.compiler.render.yaml import dump_yaml
from cruijff.compiler.taskfile import task_signature
from cruijff.plan import BASE_EVAL, CHECKPOINT_EVAL, EVAL, EVAL_KINDS, FINETUNE, PREPARE


class Renderer:
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
