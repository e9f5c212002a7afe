"""A run's torchtune config for cruijff's LoRA recipes, built as a dict."""

from __future__ import annotations

from typing import Any

from cruijff.compiler.families import CUSTOM, DEFAULT_MAX_SEQ_LEN, FAMILIES
from cruijff.data.formats import REGISTRY
from cruijff.plan import Resources
from cruijff.prompting import CHAT

SINGLE_DEVICE_RECIPE = "lora_finetune_single_device.py"
DISTRIBUTED_RECIPE = "lora_finetune_distributed.py"
_SCHEDULERS = {
    "cosine": "torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup",
    "linear": "cruijff.train.schedulers.get_linear_schedule_with_warmup",
    "constant": "cruijff.train.schedulers.get_constant_schedule_with_warmup",
}
TOKENIZER_COMPONENT = "cruijff.train.tokenizer.hf_tokenizer"


def recipe_file(gpus: int) -> str:
    return DISTRIBUTED_RECIPE if gpus > 1 else SINGLE_DEVICE_RECIPE


def model_component(model: dict[str, Any], hp: dict[str, Any]) -> dict[str, Any]:
    if model["family"] == CUSTOM:
        base = dict(model["builder"])
    else:
        fam = FAMILIES[model["family"]]
        base = {"_component_": fam.lora_builder, **fam.builder_args}
    rank = hp["lora_rank"]
    return {
        **base,
        "lora_attn_modules": list(hp["lora_attn_modules"]),
        "apply_lora_to_mlp": hp["apply_lora_to_mlp"],
        "apply_lora_to_output": False,
        "lora_rank": rank,
        "lora_alpha": hp["lora_alpha"] if hp["lora_alpha"] is not None else 2 * rank,
        "lora_dropout": hp["lora_dropout"],
    }


def tokenizer_component(model: dict[str, Any], hp: dict[str, Any]) -> dict[str, Any]:
    """Every model trains with its own HF tokenizer and chat template, as inspect evaluates it."""
    if model["family"] == CUSTOM:
        default_len = model["builder"].get("max_seq_len") or DEFAULT_MAX_SEQ_LEN
    else:
        default_len = FAMILIES[model["family"]].max_seq_len
    return {"_component_": TOKENIZER_COMPONENT, "path": model["path"],
            "max_seq_len": hp["max_seq_len"] or default_len}


def checkpointer_component(model: dict[str, Any], run_dir: str) -> dict[str, Any]:
    if model["family"] == CUSTOM:
        files, model_type = list(model["checkpoint_files"]), model["model_type"]
    else:
        fam = FAMILIES[model["family"]]
        files = fam.checkpoint_files if isinstance(fam.checkpoint_files, dict) else list(fam.checkpoint_files)
        files, model_type = (dict(files) if isinstance(files, dict) else files), fam.model_type
    return {
        "_component_": "torchtune.training.FullModelHFCheckpointer",
        "checkpoint_dir": model["path"],
        "checkpoint_files": files,
        "recipe_checkpoint": None,
        "output_dir": f"{run_dir}/checkpoints",
        "model_type": model_type,
    }


def dataset_component(dataset: dict[str, Any], split: str, prompt: dict[str, Any], hp: dict[str, Any]) -> dict[str, Any]:
    # Chat rows carry their own turns (the template does not apply); text rows have no prompt at all.
    fmt = dataset["format"]
    component = {
        "_component_": "cruijff.train.datasets.prompted_dataset",
        "path": dataset["path"],
        "format": fmt,
        "split": split,
        "template": prompt["template"] if REGISTRY[fmt].takes_template else None,
        "system": prompt["system"] if fmt != "text" else None,
        "train_on_input": hp["train_on_input"],
        "packed": hp["packed"],
    }
    if prompt.get("style", CHAT) != CHAT:  # written only when set, so chat configs are unchanged
        component["style"] = prompt["style"]
    return component


def metric_logger(wandb: dict[str, Any] | None, run_dir: str, run_name: str, experiment: str) -> dict[str, Any]:
    if wandb and wandb.get("mode") != "disabled":
        logger = {
            "_component_": "torchtune.training.metric_logging.WandBLogger",
            "project": wandb["project"],
            "mode": wandb["mode"],
            "name": run_name,
            "group": experiment,
            "log_dir": f"{run_dir}/logs",
        }
        if wandb.get("entity"):
            logger["entity"] = wandb["entity"]
        return logger
    return {"_component_": "torchtune.training.metric_logging.DiskLogger", "log_dir": f"{run_dir}/logs"}


def finetune_config(*, manifest: dict[str, Any], run_name: str, model: dict[str, Any], dataset: dict[str, Any],
                    hp: dict[str, Any], save_epochs: list[int], resources: Resources, run_dir: str) -> dict[str, Any]:
    """The whole finetune.yaml as data, in torchtune's usual key order."""
    on_gpu = resources.gpus > 0
    splits = dataset["splits"]
    config: dict[str, Any] = {
        "output_dir": run_dir,
        "model": model_component(model, hp),
        "tokenizer": tokenizer_component(model, hp),
        "checkpointer": checkpointer_component(model, run_dir),
        "resume_from_checkpoint": False,
        "save_adapter_weights_only": True,
        "dataset": dataset_component(dataset, splits["train"], manifest["prompt"], hp),
    }
    if splits.get("validation"):
        config["dataset_val"] = dataset_component(dataset, splits["validation"], manifest["prompt"], hp)
    config.update({
        "seed": hp["seed"],
        "shuffle": True,
        "batch_size": hp["batch_size"],
        "optimizer": {"_component_": "torch.optim.AdamW", "fused": on_gpu, "lr": hp["lr"],
                      "weight_decay": hp["weight_decay"]},
        "lr_scheduler": {"_component_": _SCHEDULERS[hp["lr_scheduler"]], "num_warmup_steps": hp["warmup_steps"]},
        "loss": {"_component_": "torchtune.modules.loss.CEWithChunkedOutputLoss"},
        "epochs": hp["epochs"],
        "max_steps_per_epoch": hp["max_steps_per_epoch"],
        "gradient_accumulation_steps": hp["gradient_accumulation_steps"],
        "clip_grad_norm": hp["clip_grad_norm"],
        "compile": False,
        "device": "cuda" if on_gpu else "cpu",
        "dtype": hp["dtype"] or ("bf16" if on_gpu else "fp32"),
        "enable_activation_checkpointing": on_gpu,
        "enable_activation_offloading": False,
        "metric_logger": metric_logger(manifest["finetune"].get("wandb"), run_dir, run_name, manifest["experiment"]),
        "log_every_n_steps": 1,
        "log_peak_memory_stats": on_gpu,
        "profiler": {"_component_": "torchtune.training.setup_torch_profiler", "enabled": False},
        # cruijff's additions (recipes/): validation, chosen epochs, clean exports for evaluation.
        "run_val_every_n_steps": hp["val_every_n_steps"],
        "save_epochs": save_epochs,
        "export": export_block(model["path"], manifest["finetune"].get("export", MERGED)),
        "resume": resume_block(manifest["finetune"].get("resume", {})),
    })
    return config


def resume_block(resume: dict[str, Any]) -> dict[str, Any]:
    """finetune.resume as the recipe reads it (cruijff.train.resume.ResumeSettings)."""
    minutes = resume.get("every_minutes", 30)
    return {"every_seconds": round(minutes * 60) if minutes else None, "every_steps": resume.get("every_steps")}


MERGED, ADAPTER, BOTH = "merged", "adapter", "both"  # finetune.export (absent: merged)
MODEL_TEMPLATE = "{output_dir}/epoch_{epoch}/model"
ADAPTER_TEMPLATE = "{output_dir}/epoch_{epoch}/adapter"


def export_block(base_model_dir: str, choice: str) -> dict[str, Any]:
    """finetune.yaml's export: the merged model's folder, the adapter's, or both (cruijff.train.export)."""
    block: dict[str, Any] = {"base_model_dir": base_model_dir}
    if choice in (MERGED, BOTH):
        block["dir_template"] = MODEL_TEMPLATE
    if choice in (ADAPTER, BOTH):
        block["adapter_template"] = ADAPTER_TEMPLATE
    return block


def export_dir(run_dir: str, epoch: int) -> str:
    """Where the recipe writes epoch `epoch`'s evaluation-ready model (see export.dir_template)."""
    return f"{run_dir}/epoch_{epoch}/model"


def adapter_dir(run_dir: str, epoch: int) -> str:
    """Where the recipe writes epoch `epoch`'s clean adapter (export.adapter_template)."""
    return f"{run_dir}/epoch_{epoch}/adapter"


def evaluated_dir(run_dir: str, epoch: int, choice: str) -> str:
    """What an evaluation of the epoch loads: the merged model where there is one, else the adapter."""
    return adapter_dir(run_dir, epoch) if choice == ADAPTER else export_dir(run_dir, epoch)


def header(run_name: str, recipes_dir: str, recipe: str, config_path: str, gpus: int) -> list[str]:
    nproc = f"--nproc_per_node {gpus} " if gpus > 1 else ""
    launch = f"cd {recipes_dir} && tune run {nproc}{recipe} --config {config_path}"
    return [
        f"Config for cruijff's LoRA recipe ({recipe}), run {run_name}.",
        "Generated by `cruijff plan`; edit the manifest, not this file.",
        "",
        "To launch by hand (torchtune finds custom recipes from the working directory):",
        f"  {launch}",
        "To override a value for a quick test:",
        f"  {launch} epochs=1 max_steps_per_epoch=10",
    ]
