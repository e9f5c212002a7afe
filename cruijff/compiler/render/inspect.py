"""An evaluation node's inspect-ai files: task arguments, model arguments and the command lines."""

from __future__ import annotations

from typing import Any

from cruijff.prompting import CHAT, TEXT_COMPLETION, TEXT_COMPLETION_CHAT_TEMPLATE, tokenizer_call_args


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


# A task file's interface, read from its syntax tree (cruijff.compiler.taskfile.task_signature):
# cruijff's (data, format, split, template, system) or cruijff_kit's (data_path, config_path: an
# eval.yaml holding prompt and system_prompt, vis_label, use_chat_template), run unchanged.
CRUIJFF_TASK, KIT_TASK = "cruijff", "cruijff_kit"
KIT_CONFIG_FILE = "eval.yaml"  # beside the node's task_config.yaml
KIT_REQUIRED = ("data_path", "config_path")


def kit_eval_config(*, prompt: dict[str, Any]) -> dict[str, Any]:
    """cruijff_kit's eval.yaml, the keys its task reads: the manifest's prompt, as training uses it.

    Its task formats `prompt` with str.format(input=...) (no template: "{input}", its own default)
    and adds `system_prompt` as a system message ("" when there is none, as cruijff_kit writes it).
    """
    return {"prompt": prompt["template"] if prompt["template"] is not None else "{input}",
            "system_prompt": prompt["system"] or ""}


def kit_task_config(*, dataset: dict[str, Any], prompt: dict[str, Any], task: dict[str, Any], config_path: str,
                    label: str, max_tokens: int, accepted: frozenset[str] | None,
                    temperature: float = 0) -> dict[str, Any]:
    """A cruijff_kit task's arguments: data_path and config_path, and of split, use_chat_template
    (false for prompt.style text_completion: no system message), vis_label, max_tokens and
    temperature (0: greedy, unless the manifest samples) those its function declares (accepted; None: it
    takes **kwargs). Its own generate() call passes max_tokens and temperature, which beat
    inspect's command line, so they are given as arguments too."""
    optional = {"split": dataset["splits"]["test"], "use_chat_template": prompt.get("style", CHAT) != TEXT_COMPLETION,
                "vis_label": label, "max_tokens": max_tokens, "temperature": temperature}
    return {"data_path": dataset["path"], "config_path": config_path,
            **{k: v for k, v in optional.items() if accepted is None or k in accepted},
            **task.get("args", {})}


def model_config(*, model_dir: str, gpus: int, provider: str, style: str = CHAT,
                 do_sample: bool = False) -> dict[str, Any]:
    """Model arguments (inspect's --model-config).

    hf: the local directory goes in model_path; do_sample false (greedy), or transformers rejects
    temperature 0; true only where the manifest samples (do_sample, with a temperature above 0).
    inspect's hf provider passes `device` to from_pretrained as device_map, so with more than one
    GPU it is "auto" (accelerate spreads the layers over every GPU, as cruijff_kit does) - "cuda:0"
    would load a 70B model onto one GPU. tokenizer_call_args as in
    training, so the ids fed are the trained prompt ids (no second BOS where the chat template
    writes one; docs/parity.md). Style text_completion: `chat_template` replaces the model's own
    with one that writes the prompt text alone, tokenized with the tokenizer's own BOS, exactly as
    training does. vllm: the directory is the model name and these keys become `vllm serve` flags.
    """
    if provider == "vllm":
        return {"tensor_parallel_size": max(1, gpus), "timeout": 1800}
    config = {"model_path": model_dir, "tokenizer_path": model_dir, "device": device_map(gpus), "do_sample": do_sample,
              "tokenizer_call_args": tokenizer_call_args(style)}
    if style == TEXT_COMPLETION:
        config["chat_template"] = TEXT_COMPLETION_CHAT_TEMPLATE
    return config


def device_map(gpus: int) -> str:
    """The hf provider's device (its device_map) for a job with this many GPUs."""
    return "auto" if gpus > 1 else "cuda:0" if gpus == 1 else "cpu"


def model_name(*, model_dir: str, provider: str) -> str:
    return f"vllm/{model_dir}" if provider == "vllm" else "hf/local"


def eval_commands(*, task_file: str, task_name: str, model_dir: str, provider: str, seed: int,
                  limit: int | None, metadata: dict[str, Any], max_tokens: int,
                  decoding: dict[str, Any] | None = None) -> list[list[str]]:
    """`inspect eval`, run by cruijff.results.scores, which then checks its log and says why it failed.

    inspect exits 0 even when the evaluation errored; when it cannot start (a task name that does
    not exist) its reason is in its output only. `--display log` is inspect's display for batch
    jobs: quiet while all is well, but errors are printed (`--display none` drops them too).
    --seed and --max-tokens on the command line beat the task's own GenerateConfig (inspect merges
    the CLI's generate arguments over the task's), so the manifest's values hold for every task.
    decoding (cruijff.compiler.cells.decoding): greedy (--temperature 0) unless do_sample; then
    --temperature and --top-p; samples per item are inspect's --epochs (with --epochs-reducer).
    """
    decoding = decoding or {}
    sampling = bool(decoding.get("do_sample"))
    temperature = _number(decoding["temperature"]) if sampling else "0"
    argv = ["inspect", "eval", f"{task_file}@{task_name}", "--model", model_name(model_dir=model_dir, provider=provider),
            "--model-config", "model_config.yaml", "--task-config", "task_config.yaml",
            "--log-dir", "logs", "--seed", str(seed), "--max-tokens", str(max_tokens), "--temperature", temperature]
    if sampling and "top_p" in decoding:
        argv += ["--top-p", _number(decoding["top_p"])]
    if decoding.get("samples", 1) > 1:
        argv += ["--epochs", str(decoding["samples"])]
        if "reducer" in decoding:
            argv += ["--epochs-reducer", decoding["reducer"]]
    if "max_connections" in decoding:
        argv += ["--max-connections", str(decoding["max_connections"])]
    argv += ["--display", "log", "--log-format", "eval"]
    if limit:
        argv += ["--limit", str(limit)]
    for key, value in metadata.items():
        argv += ["--metadata", f"{key}={value}"]
    return [["python", "-m", "cruijff.scores", "logs", "--", *argv]]


def _number(value: float) -> str:
    """A decoding number as inspect's command line reads it: 0.7, 1, 0.95."""
    return f"{float(value):g}"
