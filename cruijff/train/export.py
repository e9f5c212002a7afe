"""Turn one epoch's adapter-only save into a clean, self-contained Hugging Face model directory,
or a clean adapter directory, or both (finetune.export: merged, adapter, both).

The export is the base model with the LoRA adapter merged in by PEFT and saved with
`save_pretrained`, plus the base model's tokenizer files. It holds no adapter_config.json, so
`AutoModelForCausalLM.from_pretrained(dir)` + `AutoTokenizer.from_pretrained(dir)` (what
inspect-ai's `hf` provider calls) give the fine-tuned model with no PEFT at evaluation time and
no dependence on where the base model lives. The directory appears atomically: it is written
under a temporary name and renamed, so a half-written export is never mistaken for a model.

The adapter export (`export_adapter`) is the PEFT adapter alone (adapter_config.json naming the
base model, adapter_model.safetensors) plus the base model's tokenizer files and no weights of the
model: transformers' `from_pretrained(dir)` then loads the base it names and applies the adapter
through PEFT, once. The two are never one directory: transformers reads a folder holding
adapter_config.json as an adapter whatever else it holds, so merged weights beside it would get
the adapter a second time (`_refuse_mixed`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cruijff.errors import CruijffError

# Files that make a tokenizer (and generation defaults) loadable from a model directory.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json",
    "generation_config.json",
)


class ExportError(CruijffError):
    """An epoch's adapter could not be merged into the base model."""


def export_dir(template: str, *, output_dir: str, epoch: int) -> Path:
    return Path(template.format(output_dir=output_dir, epoch=epoch))


def export_merged(base_model_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Merge the PEFT adapter in adapter_dir into the base model; write it to out_dir."""
    base, adapter, out = Path(base_model_dir), Path(adapter_dir), Path(out_dir)
    for f in (adapter / "adapter_config.json", adapter / "adapter_model.safetensors"):
        if not f.is_file():
            raise ExportError(f"no PEFT adapter to export: {f} is missing",
                              hint="the checkpointer must save PEFT adapters (FullModelHFCheckpointer)")
    if not (base / "config.json").is_file():
        raise ExportError(f"base model not found at {base}", hint="export.base_model_dir must be an HF model folder")

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype="auto")
    # torchtune writes base_model_name_or_path=None; the base is given here, so it is not read.
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    record_base(adapter, base)
    model.save_pretrained(str(tmp), safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base / name).is_file() and not (tmp / name).exists():
            shutil.copy2(base / name, tmp / name)
    if (tmp / "adapter_config.json").exists():  # transformers would apply the adapter again
        raise ExportError(f"export {tmp} unexpectedly holds adapter_config.json")
    return _publish(tmp, out)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export_adapter(base_model_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy the PEFT adapter in adapter_dir, naming its base, with the base's tokenizer files, to out_dir."""
    base, adapter, out = Path(base_model_dir), Path(adapter_dir), Path(out_dir)
    for f in (adapter / name for name in ADAPTER_FILES):
        if not f.is_file():
            raise ExportError(f"no PEFT adapter to export: {f} is missing",
                              hint="the checkpointer must save PEFT adapters (FullModelHFCheckpointer)")
    if not (base / "config.json").is_file():
        raise ExportError(f"base model not found at {base}", hint="export.base_model_dir must be an HF model folder")
    record_base(adapter, base)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(adapter / name, tmp / name)
    config = tmp / "adapter_config.json"
    import json

    data = json.loads(config.read_text())
    data["base_model_name_or_path"] = str(base)  # this base, whatever the checkpoint said
    config.write_text(json.dumps(data, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (base / name).is_file():
            shutil.copy2(base / name, tmp / name)
    _refuse_mixed(tmp)
    return _publish(tmp, out)


def _refuse_mixed(folder: Path) -> None:
    """An adapter folder must hold no model weights (transformers would apply the adapter on top)."""
    weights = sorted(p.name for p in folder.iterdir()
                     if p.name.endswith(WEIGHT_SUFFIXES) and not p.name.startswith("adapter_model"))
    if weights:
        raise ExportError(f"adapter export {folder} holds model weights ({', '.join(weights)}) beside "
                          "adapter_config.json: transformers would apply the adapter to them again")


def _publish(tmp: Path, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


def record_base(adapter: Path, base: Path) -> None:
    """Write the base model into the adapter's adapter_config.json where torchtune left it null, so
    `check-finetuned ADAPTER` and `logits --model ADAPTER` find it."""
    import json

    path = Path(adapter) / "adapter_config.json"
    try:
        config = json.loads(path.read_text())
        if config.get("base_model_name_or_path"):
            return
        config["base_model_name_or_path"] = str(base)
        path.write_text(json.dumps(config, indent=2) + "\n")
    except (OSError, ValueError, AttributeError):
        pass  # the export is done; a read-only checkpoint folder must not fail the run
