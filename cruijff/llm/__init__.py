"""LLM utilities for research: load base/adapter models, logits, generation, embeddings, HDF5.

Importing this package is cheap; torch and transformers load when a function needs them.
"""

from cruijff.llm._compare import Comparison, PromptDiff, TensorDiff, check_finetuned, read_prompts
from cruijff.llm._embed import POOLING_MODES, embeddings, pool, select_layer
from cruijff.llm._forward import LogitsResult, answer_token_ids, encode, generate, next_token_logits
from cruijff.llm._hdf5 import StoredArrays, load_tensors, save_tensors
from cruijff.llm._load import (
    LoadedModel,
    ModelLoadError,
    ensure_pad_token,
    is_adapter_dir,
    load_model,
    pick_device,
    pick_dtype,
)
from cruijff.llm._prompts import PromptSettings, plain_prompts, prompt_texts, row_id, row_messages

__all__ = [
    "POOLING_MODES",
    "Comparison",
    "LoadedModel",
    "LogitsResult",
    "ModelLoadError",
    "PromptDiff",
    "PromptSettings",
    "StoredArrays",
    "TensorDiff",
    "answer_token_ids",
    "check_finetuned",
    "embeddings",
    "encode",
    "ensure_pad_token",
    "generate",
    "is_adapter_dir",
    "load_model",
    "load_tensors",
    "next_token_logits",
    "pick_device",
    "pick_dtype",
    "plain_prompts",
    "pool",
    "prompt_texts",
    "read_prompts",
    "row_id",
    "row_messages",
    "save_tensors",
    "select_layer",
]
