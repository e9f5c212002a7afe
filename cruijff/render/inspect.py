"""An evaluation node's inspect-ai files: task arguments, model arguments and the command line."""

from __future__ import annotations

from typing import Any


def task_config(*, dataset: dict[str, Any], prompt: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """Task arguments (inspect's --task-config): the same prompt source as training, plus user args."""
    return {
        "data": dataset["path"],
        "format": dataset["format"],
        "split": dataset["splits"]["test"],
        "template": prompt["template"],
        "system": prompt["system"],
        **task.get("args", {}),
    }


def model_config(*, model_dir: str, gpus: int, provider: str) -> dict[str, Any]:
    """Model arguments (inspect's --model-config) for a local model directory."""
    if provider == "vllm":
        return {"model_path": model_dir, "tokenizer_path": model_dir,
                "tensor_parallel_size": max(1, gpus), "device": "cuda"}
    return {"model_path": model_dir, "tokenizer_path": model_dir, "device": "cuda:0" if gpus else "cpu"}


def eval_command(*, task_file: str, task_name: str, provider: str, seed: int, limit: int | None,
                 metadata: dict[str, Any]) -> list[str]:
    argv = ["inspect", "eval", f"{task_file}@{task_name}", "--model", f"{provider}/local",
            "--model-config", "model_config.yaml", "--task-config", "task_config.yaml",
            "--log-dir", "logs", "--seed", str(seed), "--temperature", "0", "--display", "none",
            "--log-format", "eval"]
    if limit:
        argv += ["--limit", str(limit)]
    for key, value in metadata.items():
        argv += ["--metadata", f"{key}={value}"]
    return argv
