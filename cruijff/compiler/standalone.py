"""`cruijff eval CHECKPOINT`: one model folder evaluated outside a plan, as a one-model manifest.

The command does not have a second way to evaluate: it writes a manifest whose only model is the
checkpoint (`models.<name>.checkpoint`, evaluated only), plans it like any manifest and applies it
(locally, or as SLURM jobs), so the rendered files, prompt rules and scores are those of a plan's
`checkpoint_eval` nodes. What the checkpoint was trained with is read from where cruijff wrote
it: an epoch folder of a plan (`<plan>/finetune/<run>/epoch_<n>[/model|/adapter]`) has its run's
`finetune.yaml` two levels up (dataset, template, system prompt, style: the prompt it learned) and
the plan's resolved `manifest.yaml` (the model's family, the cluster and eval settings); the
seed's `setup_inspect.py --finetune_epoch_dir` read the same folder. Options beat both.
Pure apart from reading those two files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cruijff.errors import UsageError

EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
EXPORTS = ("model", "adapter")  # an epoch folder's exports (finetune.export: merged, adapter, both)
NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
DATASET = "data"


@dataclass(frozen=True)
class Trained:
    """What an epoch folder of a cruijff plan says about the model in it."""

    run: str
    epoch: int
    model_dir: str
    dataset: dict[str, Any]  # the run's finetune.yaml `dataset:` component (path, format, template, system, style)
    manifest: dict[str, Any] = field(default_factory=dict)  # the plan's resolved manifest.yaml, or {}
    model: str | None = None  # the run's model name in that manifest


def _load_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def trained_with(checkpoint: str | Path) -> Trained | None:
    """The run and prompt of a cruijff epoch folder (`epoch_<n>`, or its `model` or `adapter`), or None."""
    path = Path(checkpoint).resolve()
    exported = path.name in EXPORTS and EPOCH_DIR.match(path.parent.name)
    epoch_dir = path.parent if exported else path
    match = EPOCH_DIR.match(epoch_dir.name)
    run_dir = epoch_dir.parent
    config_path = run_dir / "finetune.yaml"
    if not match or not config_path.is_file():
        return None
    try:
        config = _load_yaml(config_path) or {}
    except Exception as e:  # noqa: BLE001 - ruamel's errors have no common base worth naming
        raise UsageError(f"cannot read {config_path}: {e}", hint="plan the experiment again") from None
    dataset = config.get("dataset") if isinstance(config, dict) else None
    if not isinstance(dataset, dict):
        return None
    if exported:
        model_dir = path
    else:  # the folder an evaluation of the epoch loads: the merged model, else the adapter (finetune.export)
        model_dir = next((epoch_dir / e for e in EXPORTS if (epoch_dir / e).is_dir()), path)
    manifest: dict[str, Any] = {}
    plan_dir = run_dir.parent.parent
    if (plan_dir / "manifest.yaml").is_file():
        try:
            loaded = _load_yaml(plan_dir / "manifest.yaml")
            manifest = loaded if isinstance(loaded, dict) else {}
        except Exception:  # noqa: BLE001 - provenance only: the options still say what to do
            manifest = {}
    model = _run_model(plan_dir, run_dir.name)
    return Trained(run_dir.name, int(match.group(1)), str(model_dir), dataset, manifest, model)


def _run_model(plan_dir: Path, run: str) -> str | None:
    import json

    try:
        plan = json.loads((plan_dir / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for node in plan.get("nodes", []):
        if node.get("id") == f"finetune/{run}":
            return (node.get("attrs") or {}).get("model")
    return None


def safe_name(text: str) -> str:
    name = NAME_UNSAFE.sub("-", text).lstrip("._-")[:64]
    return name or "checkpoint"


def parse_task(spec: str) -> tuple[str, str]:
    """FILE@NAME → (file, name)."""
    file, sep, name = spec.rpartition("@")
    if not sep or not file or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise UsageError(f"--task {spec!r} is not FILE@NAME", hint="e.g. --task experiments/tasks/capitalization.py@capitalization")
    return file, name


def eval_manifest(checkpoint: str, *, tasks: list[str], out: str, slurm: bool, data: str | None = None,
                  format: str | None = None, split: str | None = None, template: str | None = None,
                  system: str | None = None, style: str | None = None, family: str | None = None,
                  name: str | None = None, limit: int | None = None, max_tokens: int | None = None,
                  seed: int | None = None, resources: dict[str, Any] | None = None,
                  cluster: dict[str, Any] | None = None, trained: Trained | None = None) -> dict[str, Any]:
    """The one-model manifest `cruijff eval` plans: the checkpoint, its tasks on one dataset, the prompt.

    Unset options come from what trained it (an epoch folder of a plan), else the defaults:
    no template or system prompt, chat style, instruct_json, split test, family custom.
    """
    found = trained.dataset if trained else {}
    plan_manifest = trained.manifest if trained else {}
    data = data or found.get("path")
    if not data:
        raise UsageError("--data is required: the checkpoint is not an epoch folder of a cruijff plan",
                         hint="--data FILE (and --format, --template, --system: the prompt it was trained with)")
    plan_model = (plan_manifest.get("models") or {}).get(trained.model or "", {}) if trained else {}
    prompt = {"template": template if template is not None else found.get("template"),
              "system": system if system is not None else found.get("system"),
              "style": style or found.get("style") or "chat"}
    test_split = split or "test"
    ev: dict[str, Any] = {k: v for k, v in (plan_manifest.get("eval") or {}).items()
                          if k in ("provider", "seed", "max_tokens", "resources")}
    ev.update({k: v for k, v in (("limit", limit), ("max_tokens", max_tokens), ("seed", seed)) if v is not None})
    if resources:
        ev["resources"] = {**ev.get("resources", {}), **resources}
    ev["tasks"] = []
    for spec in tasks:
        file, task = parse_task(spec)
        taken = {t["name"] for t in ev["tasks"]}
        label = safe_name(task) if safe_name(task) not in taken else safe_name(f"{Path(file).stem}.{task}")
        while label in taken:
            label = safe_name(f"{label}-{len(taken)}")
        ev["tasks"].append({"name": label, "file": str(Path(file).resolve()), "task": task})
    if trained:
        label = f"{trained.run}_epoch_{trained.epoch}"
        model_dir = trained.model_dir
    else:
        label = Path(checkpoint).resolve().name
        model_dir = str(Path(checkpoint).resolve())
    model_name = safe_name(name or label)
    manifest: dict[str, Any] = {
        "experiment": safe_name(f"eval-{model_name}"),
        "description": f"cruijff eval {checkpoint}",
        "output_dir": str(Path(out).resolve()),
        "executor": {"kind": "slurm" if slurm else "local", "max_parallel": 1},
        "models": {model_name: {"checkpoint": model_dir, "family": family or plan_model.get("family") or "custom"}},
        # a dataset only evaluated: its test split plays every role (nothing is trained on it)
        "datasets": {DATASET: {"path": str(Path(data).resolve()), "format": format or found.get("format") or "instruct_json",
                               "splits": {"train": test_split, "validation": None, "test": test_split}}},
        "prompt": prompt,
        "finetune": {},
        "eval": ev,
    }
    plan_cluster = {k: v for k, v in (plan_manifest.get("cluster") or {}).items()
                    if k in ("account", "partition", "constraint", "qos", "env")}
    if plan_cluster or cluster:
        manifest["cluster"] = {**plan_cluster, **(cluster or {})}
    return manifest
