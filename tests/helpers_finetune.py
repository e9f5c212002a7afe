"""finetune.yaml files as cruijff's compiler renders them, for tests that run or validate them.

No hand-written copy of a rendered config: `tiny_finetune_config` writes a small manifest for the
tiny Llama (cruijff.llm.tiny) and compiles it with `compile_manifest`, the function `cruijff plan`
calls, so a change to the renderer reaches these tests. gpus 0 renders the single-device recipe's
CPU config, gpus > 1 the distributed recipe's (CUDA: it validates here, it cannot run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RUN = "tiny_words"  # model "tiny" x dataset "words": the one run of the manifest


def tiny_manifest(model_dir: str | Path, data: str | Path, *, gpus: int = 0) -> dict[str, Any]:
    """2 epochs of 4-row batches, validation every 8 steps, epoch 1 saved and exported."""
    from cruijff.llm.tiny import torchtune_model

    builder = torchtune_model(lora=True)  # the architecture; the manifest's finetune adds the LoRA keys
    return {
        "experiment": "tiny-fixture",
        "output_dir": "plan",
        "executor": {"kind": "slurm"} if gpus else {"kind": "local", "max_parallel": 1},
        "models": {"tiny": {"path": str(model_dir), "family": "custom", "builder": builder,
                            "checkpoint_files": ["model.safetensors"], "model_type": "LLAMA3"}},
        "datasets": {"words": {"path": str(data), "format": "instruct_json"}},
        "prompt": {"template": "Capitalize: {input}"},
        "finetune": {
            "hyperparameters": {"epochs": 2, "batch_size": 4, "lr": 3.0e-3, "warmup_steps": 2, "lora_rank": 8,
                                "val_every_n_steps": 8, "max_seq_len": 512, "seed": 0},
            "save_epochs": [1],
            "resources": {"gpus": gpus, "cpus": 1, "mem": "4G", "time": "00:15:00"},
        },
    }


def tiny_finetune_config(plan_dir: Path, model_dir: str | Path, data: str | Path, *, gpus: int = 0) -> Path:
    """Compile the tiny manifest into `plan_dir`; the run's finetune.yaml (its folder is the
    run's output_dir). Paths need not exist yet: the plan-time file checks are off."""
    from cruijff.compiler.pipeline import compile_manifest
    from cruijff.compiler.render.yaml import dump_yaml

    plan_dir.mkdir(parents=True, exist_ok=True)
    manifest = plan_dir / "tiny.yaml"
    manifest.write_text(dump_yaml(tiny_manifest(model_dir, data, gpus=gpus)))
    compiled = compile_manifest(manifest, out=str(plan_dir), check_paths=False)
    rel = f"finetune/{RUN}/finetune.yaml"
    path = plan_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(compiled.files[rel])
    return path
