"""An evaluation node's inspect-ai files: task arguments, model arguments and the command lines."""

from __future__ import annotations

from typing import Any

from cruijff.prompting import EVAL_TOKENIZER_CALL_ARGS


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
    """Model arguments (inspect's --model-config).

    hf: the local directory goes in model_path; do_sample false, or transformers rejects
    temperature 0; tokenizer_call_args as in training, so the ids fed are the trained prompt
    ids (no second BOS where the chat template writes one; docs/parity.md).
    vllm: the directory is the model name and these keys become `vllm serve` flags.
    """
    if provider == "vllm":
        return {"tensor_parallel_size": max(1, gpus), "timeout": 1800}
    return {"model_path": model_dir, "tokenizer_path": model_dir, "device": "cuda:0" if gpus else "cpu",
            "do_sample": False, "tokenizer_call_args": dict(EVAL_TOKENIZER_CALL_ARGS)}


def model_name(*, model_dir: str, provider: str) -> str:
    return f"vllm/{model_dir}" if provider == "vllm" else "hf/local"


def eval_commands(*, task_file: str, task_name: str, model_dir: str, provider: str, seed: int,
                  limit: int | None, metadata: dict[str, Any]) -> list[list[str]]:
    """`inspect eval`, then a check of its log: inspect exits 0 even when the evaluation errored."""
    argv = ["inspect", "eval", f"{task_file}@{task_name}", "--model", model_name(model_dir=model_dir, provider=provider),
            "--model-config", "model_config.yaml", "--task-config", "task_config.yaml",
            "--log-dir", "logs", "--seed", str(seed), "--temperature", "0", "--display", "none",
            "--log-format", "eval"]
    if limit:
        argv += ["--limit", str(limit)]
    for key, value in metadata.items():
        argv += ["--metadata", f"{key}={value}"]
    return [argv, ["python", "-m", "cruijff.scores", "logs"]]
