"""Load a base model, a merged model or base + PEFT adapter, ready for batched inference.

A directory with `adapter_config.json` is a PEFT adapter: its base comes from
`base_model_name_or_path` unless a base is given. The tokenizer comes from the adapter
directory when it has one (training may add tokens), else from the base.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cruijff.errors import CruijffError, UsageError

DTYPES = ("auto", "float32", "bfloat16", "float16")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


class ModelLoadError(CruijffError):
    """A model, adapter or tokenizer could not be found or read."""


@dataclass
class LoadedModel:
    model: Any  # transformers PreTrainedModel or peft PeftModel, in eval mode
    tokenizer: Any
    device: str
    base_dir: str
    adapter_dir: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"model": self.base_dir, "adapter": self.adapter_dir, "device": self.device,
                "dtype": str(self.model.dtype).removeprefix("torch.")}


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def adapter_base(adapter_dir: str | Path) -> str:
    """The base model an adapter was trained on, as written in its adapter_config.json."""
    cfg_path = Path(adapter_dir) / "adapter_config.json"
    try:
        base = json.loads(cfg_path.read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"cannot read {cfg_path}: {e}") from e
    base = base or _planned_base(Path(adapter_dir))
    if not base:
        raise ModelLoadError(f"{cfg_path} names no base_model_name_or_path",
                             hint="pass the base model explicitly (--base BASE_DIR)")
    return base


def _planned_base(adapter_dir: Path) -> str | None:
    """The base model of an adapter cruijff trained, from its run's finetune.yaml (export.base_model_dir):
    `<run>/checkpoints/epoch_<n>/` or `<run>/epoch_<n>/...`, whose adapter_config.json (written by
    torchtune) may name no base."""
    for folder in list(adapter_dir.resolve().parents)[:3]:
        config = folder / "finetune.yaml"
        if config.is_file():
            from ruamel.yaml import YAML

            try:
                data = YAML(typ="safe").load(config.read_text(encoding="utf-8"))
                return str(data["export"]["base_model_dir"])
            except Exception:  # not cruijff's, or unreadable: the caller says what to pass
                return None
    return None


def resolve(model: str | Path, adapter: str | Path | None = None) -> tuple[str, str | None]:
    """(base dir, adapter dir or None) from what the user named."""
    model = str(model)
    if adapter is None and is_adapter_dir(model):
        return adapter_base(model), model
    if adapter is not None and not is_adapter_dir(adapter):
        raise UsageError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)",
                         hint="for a merged model pass it as --model alone")
    return model, (str(adapter) if adapter is not None else None)


def pick_device(device: str | None = None) -> str:
    """cuda > mps > cpu, unless the user chose."""
    import torch

    if device and device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, dtype: str | None = None):
    """bfloat16 on GPUs that support it, float16 on older GPUs and MPS, float32 on CPU."""
    import torch

    if dtype and dtype != "auto":
        if dtype not in DTYPES:
            raise UsageError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(DTYPES)}")
        return getattr(torch, dtype)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.startswith("mps"):
        return torch.float16
    return torch.float32


def _has_tokenizer(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in _TOKENIZER_FILES)


def load_tokenizer(base_dir: str, adapter_dir: str | None = None):
    from transformers import AutoTokenizer

    src = adapter_dir if adapter_dir and _has_tokenizer(adapter_dir) else base_dir
    try:
        return AutoTokenizer.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load a tokenizer from {src}: {e}") from e


def ensure_pad_token(tokenizer, model=None) -> str | None:
    """Give the tokenizer a pad token, reusing eos/unk so the embeddings keep their size.

    Padding positions are masked out everywhere, so which token pads does not change results.
    Only a tokenizer with neither eos nor unk gets a new token (and the model is resized, with
    a warning). Returns a note describing what was done, or None.
    """
    note = None
    if tokenizer.pad_token is None:
        for name in ("eos_token", "unk_token"):
            tok = getattr(tokenizer, name)
            if tok is not None:
                tokenizer.pad_token = tok
                note = f"tokenizer has no pad token; padding with its {name.split('_')[0]} token {tok!r}"
                break
        else:
            tokenizer.add_special_tokens({"pad_token": "<|cruijff_pad|>"})
            note = "tokenizer has no pad, eos or unk token; added <|cruijff_pad|>"
            if model is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
                model.resize_token_embeddings(len(tokenizer))
                note += " and resized the model's embeddings"
            warnings.warn(note, stacklevel=2)
    if model is not None:
        for cfg in (getattr(model, "config", None), getattr(model, "generation_config", None)):
            if cfg is not None and getattr(cfg, "pad_token_id", None) is None:
                cfg.pad_token_id = tokenizer.pad_token_id
    return note


def load_model(model: str | Path, adapter: str | Path | None = None, *, device: str | None = None,
               dtype: str | None = None, merge: bool = False) -> LoadedModel:
    """Load for inference. `model` may itself be an adapter dir (its base is then looked up)."""
    from transformers import AutoModelForCausalLM

    base_dir, adapter_dir = resolve(model, adapter)
    if base_dir.startswith(("/", ".")) and not Path(base_dir).is_dir():
        raise ModelLoadError(f"base model directory {base_dir} does not exist",
                             hint="pass the base model directory with --model (and the adapter with --adapter)")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dev, dtype)
    try:
        hf = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch_dtype)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model from {base_dir}: {e}",
                             hint="a local Hugging Face model directory (config.json + weights) is expected") from e
    tokenizer = load_tokenizer(base_dir, adapter_dir)
    notes = []
    note = ensure_pad_token(tokenizer, hf)
    if note:
        notes.append(note)
    if len(tokenizer) > hf.get_input_embeddings().weight.shape[0]:
        # The adapter's tokenizer knows tokens the base lacks (added during training).
        hf.resize_token_embeddings(len(tokenizer))
        notes.append(f"resized embeddings to the tokenizer's {len(tokenizer)} tokens")
        warnings.warn(notes[-1], stacklevel=2)
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            hf = PeftModel.from_pretrained(hf, adapter_dir)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot load adapter {adapter_dir} onto {base_dir}: {e}") from e
        if merge:
            hf = hf.merge_and_unload()
    hf.to(dev)
    hf.eval()
    return LoadedModel(hf, tokenizer, dev, base_dir, adapter_dir, notes)
