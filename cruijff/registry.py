"""Model families: how torchtune builds each one, where its files are, and what it needs to train.

A `custom` family takes all of this from the manifest (tests use it for the tiny model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cruijff.model import Resources


@dataclass(frozen=True)
class Family:
    name: str
    lora_builder: str  # torchtune LoRA model builder (dotted path)
    tokenizer: dict[str, Any]  # tokenizer component; paths relative to the model folder
    checkpoint_files: Any  # list of files, or torchtune's {filename_format, max_filename}
    model_type: str  # FullModelHFCheckpointer model_type
    finetune: Resources  # default fine-tuning resources (docs/cruijff_kit.md: against cruijff_kit's)
    eval: Resources  # default evaluation resources
    min_gpus: int = 1  # fewer GPUs cannot hold it (for GPU runs)
    max_seq_len: int = 2048
    notes: str = ""


def _shards(n: int) -> dict[str, str]:
    return {"filename_format": "model-{}-of-{}.safetensors", "max_filename": f"{n:05d}"}


_LLAMA3_TOK = {"_component_": "torchtune.models.llama3.llama3_tokenizer", "path": "original/tokenizer.model"}
_QWEN25_TOK = {"_component_": "torchtune.models.qwen2_5.qwen2_5_tokenizer", "path": "vocab.json",
               "merges_file": "merges.txt"}

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("Llama-2-7b-hf", "torchtune.models.llama2.lora_llama2_7b",
               {"_component_": "torchtune.models.llama2.llama2_tokenizer", "path": "tokenizer.model"},
               _shards(2), "LLAMA2",
               Resources(gpus=1, cpus=4, mem="64G", time="08:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="01:00:00")),
        Family("Llama-3.2-1B", "torchtune.models.llama3_2.lora_llama3_2_1b", _LLAMA3_TOK,
               ["model.safetensors"], "LLAMA3_2",
               Resources(gpus=1, cpus=4, mem="32G", time="04:00:00"),
               Resources(gpus=1, cpus=4, mem="32G", time="00:30:00")),
        Family("Llama-3.2-1B-Instruct", "torchtune.models.llama3_2.lora_llama3_2_1b", _LLAMA3_TOK,
               ["model.safetensors"], "LLAMA3_2",
               Resources(gpus=1, cpus=4, mem="32G", time="04:00:00"),
               Resources(gpus=1, cpus=4, mem="32G", time="00:30:00")),
        Family("Llama-3.2-3B-Instruct", "torchtune.models.llama3_2.lora_llama3_2_3b", _LLAMA3_TOK,
               _shards(2), "LLAMA3_2",
               Resources(gpus=1, cpus=4, mem="48G", time="06:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="00:45:00")),
        Family("Llama-3.1-8B-Instruct", "torchtune.models.llama3_1.lora_llama3_1_8b", _LLAMA3_TOK,
               _shards(4), "LLAMA3",
               Resources(gpus=1, cpus=8, mem="80G", time="12:00:00"),
               Resources(gpus=1, cpus=8, mem="64G", time="01:00:00")),
        Family("Llama-3.3-70B-Instruct", "torchtune.models.llama3_3.lora_llama3_3_70b", _LLAMA3_TOK,
               _shards(30), "LLAMA3",
               Resources(gpus=4, cpus=16, mem="320G", time="24:00:00"),
               Resources(gpus=4, cpus=16, mem="256G", time="04:00:00"),
               min_gpus=4, notes="bf16 weights alone are 140 GB: 4 × 80 GB GPUs (FSDP shards them; "
                                 "cruijff_kit's 4 GPUs / 320G on 4-GPU nodes)"),
        Family("Qwen2.5-3B", "torchtune.models.qwen2_5.lora_qwen2_5_3b", _QWEN25_TOK,
               _shards(2), "QWEN2",
               Resources(gpus=1, cpus=4, mem="48G", time="06:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="00:45:00")),
        Family("Qwen2.5-3B-Instruct", "torchtune.models.qwen2_5.lora_qwen2_5_3b", _QWEN25_TOK,
               _shards(2), "QWEN2",
               Resources(gpus=1, cpus=4, mem="48G", time="06:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="00:45:00")),
    ]
}

CUSTOM = "custom"
CUSTOM_DEFAULTS = (Resources(gpus=1, cpus=4, mem="32G", time="04:00:00"),
                   Resources(gpus=1, cpus=4, mem="32G", time="00:30:00"))


def family_names() -> list[str]:
    return [*FAMILIES, CUSTOM]
