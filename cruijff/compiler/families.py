"""Model families: how torchtune builds each one, where its files are, and what it needs to train.

Every family trains with the model folder's own Hugging Face tokenizer and chat template
(cruijff.train.tokenizer; see render/torchtune.tokenizer_component and docs/parity.md).
A `custom` family takes the rest from the manifest (tests use it for the tiny model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cruijff.plan import Resources

# SmolLM2-135M's architecture (cruijff.llm.smollm2 builds the model from it; kept here so that
# planning never imports cruijff.llm).
SMOLLM2_ARCH = {
    "vocab_size": 49152,
    "num_layers": 30,
    "num_heads": 9,
    "num_kv_heads": 3,
    "embed_dim": 576,
    "max_seq_len": 8192,
    "intermediate_dim": 1536,
    "attn_dropout": 0.0,
    "norm_eps": 1e-5,
    "rope_base": 100000,
    "scale_factor": 1,  # llama3_2's scaled RoPE with factor 1 is plain RoPE, as in the GGUF
}


DEFAULT_MAX_SEQ_LEN = 2048


@dataclass(frozen=True)
class Family:
    name: str
    lora_builder: str  # torchtune LoRA model builder (dotted path)
    checkpoint_files: Any  # list of files, or torchtune's {filename_format, max_filename}
    model_type: str  # FullModelHFCheckpointer model_type
    finetune: Resources  # default fine-tuning resources (docs/cruijff_kit.md: against cruijff_kit's)
    eval: Resources  # default evaluation resources
    min_gpus: int = 1  # fewer GPUs cannot hold it (for GPU runs)
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN
    notes: str = ""
    builder_args: dict[str, Any] = field(default_factory=dict)  # for generic builders (dimensions)


def _shards(n: int) -> dict[str, str]:
    return {"filename_format": "model-{}-of-{}.safetensors", "max_filename": f"{n:05d}"}


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family("Llama-2-7b-hf", "torchtune.models.llama2.lora_llama2_7b",
               _shards(2), "LLAMA2",
               Resources(gpus=1, cpus=4, mem="64G", time="08:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="01:00:00")),
        Family("Llama-3.2-1B", "torchtune.models.llama3_2.lora_llama3_2_1b",
               ["model.safetensors"], "LLAMA3_2",
               Resources(gpus=1, cpus=4, mem="32G", time="04:00:00"),
               Resources(gpus=1, cpus=4, mem="32G", time="00:30:00")),
        Family("Llama-3.2-1B-Instruct", "torchtune.models.llama3_2.lora_llama3_2_1b",
               ["model.safetensors"], "LLAMA3_2",
               Resources(gpus=1, cpus=4, mem="32G", time="04:00:00"),
               Resources(gpus=1, cpus=4, mem="32G", time="00:30:00")),
        Family("Llama-3.2-3B-Instruct", "torchtune.models.llama3_2.lora_llama3_2_3b",
               _shards(2), "LLAMA3_2",
               Resources(gpus=1, cpus=4, mem="48G", time="06:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="00:45:00")),
        Family("Llama-3.1-8B-Instruct", "torchtune.models.llama3_1.lora_llama3_1_8b",
               _shards(4), "LLAMA3",
               Resources(gpus=1, cpus=8, mem="80G", time="12:00:00"),
               Resources(gpus=1, cpus=8, mem="64G", time="01:00:00")),
        Family("Llama-3.3-70B-Instruct", "torchtune.models.llama3_3.lora_llama3_3_70b",
               _shards(30), "LLAMA3",
               Resources(gpus=4, cpus=16, mem="320G", time="24:00:00"),
               Resources(gpus=4, cpus=16, mem="256G", time="04:00:00"),
               min_gpus=4, notes="bf16 weights alone are 140 GB: 4 × 80 GB GPUs (FSDP shards them; "
                                 "cruijff_kit's 4 GPUs / 320G on 4-GPU nodes)"),
        Family("Qwen2.5-3B", "torchtune.models.qwen2_5.lora_qwen2_5_3b",
               _shards(2), "QWEN2",
               Resources(gpus=1, cpus=4, mem="48G", time="06:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="00:45:00")),
        Family("Qwen2.5-3B-Instruct", "torchtune.models.qwen2_5.lora_qwen2_5_3b",
               _shards(2), "QWEN2",
               Resources(gpus=1, cpus=4, mem="48G", time="06:00:00"),
               Resources(gpus=1, cpus=4, mem="48G", time="00:45:00")),
        Family("SmolLM2-135M-Instruct", "torchtune.models.llama3_2._component_builders.lora_llama3_2",
               ["model.safetensors"], "LLAMA3_2",
               Resources(gpus=1, cpus=4, mem="16G", time="01:00:00"),
               Resources(gpus=1, cpus=4, mem="16G", time="00:30:00"),
               notes="built offline by `cruijff smollm2-model DIR`; trains on a CPU in minutes",
               builder_args={**SMOLLM2_ARCH, "tie_word_embeddings": True}),
    ]
}

CUSTOM = "custom"
CUSTOM_DEFAULTS = (Resources(gpus=1, cpus=4, mem="32G", time="04:00:00"),
                   Resources(gpus=1, cpus=4, mem="32G", time="00:30:00"))


def family_names() -> list[str]:
    return [*FAMILIES, CUSTOM]
