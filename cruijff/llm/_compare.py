"""Did fine-tuning change anything? Weights and outputs of a saved model against its base.

Weights are read tensor by tensor from the files (no model is built for that step): a merged
or full model is compared with the base per tensor; a PEFT adapter is judged by its LoRA B
matrices (all zero = the adapter is a no-op) and any full tensors it carries. Outputs are
compared on a few prompts: next-token logits and greedy generations.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from cruijff.errors import UsageError
from cruijff.llm._load import ModelLoadError, adapter_base, is_adapter_dir

DEFAULT_PROMPTS = (
    "The capital of France is",
    "Question: Are identical twins monozygotic?\nAnswer:",
    "Capitalize the word: apple",
    "1, 2, 3, 4,",
)
_PEFT_PREFIX = "base_model.model."


@dataclass
class TensorDiff:
    name: str
    shape: list[int]
    status: str  # same | differs | lora_b_zero | lora_b_nonzero | only_in_model | only_in_base | shape_mismatch
    max_abs: float | None = None  # max |model - base| (LoRA B: max |B|)
    rel: float | None = None  # ||model - base|| / ||base|| (LoRA B: None)
    norm: float | None = None  # ||B|| for LoRA B, ||model - base|| otherwise

    @property
    def differs(self) -> bool:
        return self.status in ("differs", "lora_b_nonzero", "shape_mismatch", "only_in_model", "only_in_base")


@dataclass
class PromptDiff:
    prompt: str
    logits_max_abs: float
    same_top_token: bool
    base_generation: str
    model_generation: str

    @property
    def same_generation(self) -> bool:
        return self.base_generation == self.model_generation


@dataclass
class Comparison:
    model_dir: str
    base_dir: str
    kind: str  # adapter | full
    atol: float
    logits_atol: float
    tensors: list[TensorDiff] = field(default_factory=list)
    outputs: list[PromptDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def weights_differ(self) -> bool:
        return any(t.differs for t in self.tensors)

    @property
    def outputs_differ(self) -> bool:
        return any(o.logits_max_abs > self.logits_atol or not o.same_generation for o in self.outputs)

    @property
    def differs(self) -> bool:
        return self.weights_differ or self.outputs_differ

    @property
    def verdict(self) -> str:
        return "differs" if self.differs else "identical"

    def summary(self) -> dict[str, Any]:
        diffs = [t for t in self.tensors if t.max_abs is not None]
        rels = [t.rel for t in self.tensors if t.rel is not None]
        return {
            "verdict": self.verdict,
            "weights_differ": self.weights_differ,
            "outputs_differ": self.outputs_differ,
            "tensors_compared": len(self.tensors),
            "tensors_differing": sum(t.differs for t in self.tensors),
            "max_abs_diff": max((t.max_abs for t in diffs), default=0.0),
            "max_rel_diff": max(rels, default=0.0),
            "logits_max_abs_diff": max((o.logits_max_abs for o in self.outputs), default=None),
            "generations_differing": sum(not o.same_generation for o in self.outputs),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_dir, "base": self.base_dir, "kind": self.kind,
            "atol": self.atol, "logits_atol": self.logits_atol, **self.summary(),
            "notes": self.notes,
            "tensors": [asdict(t) | {"differs": t.differs} for t in self.tensors],
            "outputs": [asdict(o) | {"same_generation": o.same_generation} for o in self.outputs],
        }


# ---- reading weights lazily -------------------------------------------------------------------

class WeightFiles:
    """Tensors of a model directory by name, opened one at a time (safetensors, else torch .bin)."""

    def __init__(self, directory: str | Path, stem: str = "model"):
        d = Path(directory)
        self.where: dict[str, Path] = {}
        self._bin: dict[str, Any] | None = None
        files = sorted(d.glob(f"{stem}*.safetensors"))
        if files:
            from safetensors import safe_open

            for file in files:
                with safe_open(str(file), framework="pt") as f:
                    for key in f.keys():
                        self.where[key] = file
            return
        bins = sorted(d.glob("pytorch_model*.bin" if stem == "model" else f"{stem}*.bin"))
        if not bins:
            raise ModelLoadError(f"no {stem}*.safetensors or .bin weights in {d}",
                                 hint="point at a Hugging Face model or PEFT adapter directory")
        import torch

        self._bin = {}
        for file in bins:
            self._bin.update(torch.load(str(file), map_location="cpu", weights_only=True, mmap=True))
        self.where = {k: bins[0] for k in self._bin}

    def keys(self) -> list[str]:
        return list(self.where)

    def get(self, name: str):
        if self._bin is not None:
            return self._bin[name]
        from safetensors import safe_open

        with safe_open(str(self.where[name]), framework="pt") as f:
            return f.get_tensor(name)


def _diff(name: str, a, b, atol: float) -> TensorDiff:
    if tuple(a.shape) != tuple(b.shape):
        return TensorDiff(name, list(a.shape), "shape_mismatch")
    a, b = a.double(), b.double()
    d = (a - b)
    max_abs = float(d.abs().max()) if d.numel() else 0.0
    norm = float(d.norm())
    base_norm = float(b.norm())
    rel = norm / base_norm if base_norm > 0 else (0.0 if norm == 0 else None)  # undefined for a zero base
    return TensorDiff(name, list(a.shape), "differs" if max_abs > atol else "same", max_abs, rel, norm)


def compare_full_weights(model_dir: str | Path, base_dir: str | Path, atol: float = 0.0) -> list[TensorDiff]:
    model, base = WeightFiles(model_dir), WeightFiles(base_dir)
    mk, bk = set(model.keys()), set(base.keys())
    rows = [_diff(k, model.get(k), base.get(k), atol) for k in sorted(mk & bk)]
    rows += [TensorDiff(k, list(model.get(k).shape), "only_in_model") for k in sorted(mk - bk)]
    rows += [TensorDiff(k, list(base.get(k).shape), "only_in_base") for k in sorted(bk - mk)]
    return rows


def compare_adapter_weights(adapter_dir: str | Path, base_dir: str | Path, atol: float = 0.0) -> list[TensorDiff]:
    """LoRA B norms (B = 0 means no change), full tensors compared with the base where they match."""
    adapter = WeightFiles(adapter_dir, stem="adapter_model")
    base: WeightFiles | None = None
    rows = []
    for key in sorted(adapter.keys()):
        t = adapter.get(key)
        if "lora_B" in key or "lora_embedding_B" in key:
            max_abs = float(t.double().abs().max()) if t.numel() else 0.0
            rows.append(TensorDiff(key, list(t.shape), "lora_b_nonzero" if max_abs > atol else "lora_b_zero",
                                   max_abs, None, float(t.double().norm())))
        elif "lora_" in key:
            continue  # A matrices change nothing while B is zero; B tells the story
        else:  # modules_to_save and the like: a full replacement tensor
            if base is None:
                base = WeightFiles(base_dir)
            name = key.removeprefix(_PEFT_PREFIX)
            name = name if name in base.where else key
            if name in base.where:
                rows.append(_diff(key, t, base.get(name), atol))
            else:
                rows.append(TensorDiff(key, list(t.shape), "only_in_model"))
    return rows


# ---- outputs -----------------------------------------------------------------------------------

def read_prompts(path: str | Path | None) -> list[str]:
    """A JSON list of strings, JSON lines of strings or {"input"|"prompt": ...}, or one prompt per line."""
    if path is None:
        return list(DEFAULT_PROMPTS)
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise UsageError(f"cannot read prompts file {p}: {e}") from e

    def one(v: Any) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, dict) and isinstance(v.get("input", v.get("prompt")), str):
            return v.get("input", v.get("prompt"))
        raise UsageError(f"{p}: a prompt must be a string or an object with `input`/`prompt`")

    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return [one(v) for v in json.loads(stripped)]
        except json.JSONDecodeError as e:
            raise UsageError(f"{p} is not valid JSON: {e}") from e
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if p.suffix == ".jsonl":
        return [one(json.loads(ln)) for ln in lines]
    if not lines:
        raise UsageError(f"{p} holds no prompt")
    return lines


def _outputs(model: str, adapter: str | None, prompts: Sequence[str], chat_template: bool | None,
             max_new_tokens: int, device: str | None, dtype: str | None):
    from cruijff.llm._forward import generate, next_token_logits
    from cruijff.llm._load import load_model
    from cruijff.llm._prompts import PromptSettings, plain_prompts

    lm = load_model(model, adapter, device=device, dtype=dtype)
    use_chat = bool(getattr(lm.tokenizer, "chat_template", None)) if chat_template is None else chat_template
    texts = plain_prompts(lm.tokenizer, prompts, PromptSettings(chat_template=use_chat))
    special = not use_chat
    logits = next_token_logits(lm.model, lm.tokenizer, texts, add_special_tokens=special, batch_size=len(texts) or 1)
    gens = generate(lm.model, lm.tokenizer, texts, max_new_tokens=max_new_tokens, add_special_tokens=special,
                    batch_size=len(texts) or 1)
    del lm
    return logits.logits, gens


def compare_outputs(model: str, adapter: str | None, base: str, prompts: Sequence[str], *,
                    chat_template: bool | None = None, max_new_tokens: int = 20,
                    device: str | None = None, dtype: str | None = None) -> list[PromptDiff]:
    """Base first, then the tuned model, so only one is in memory at a time."""
    import gc

    base_logits, base_gens = _outputs(base, None, prompts, chat_template, max_new_tokens, device, dtype)
    gc.collect()
    tuned_logits, tuned_gens = _outputs(model, adapter, prompts, chat_template, max_new_tokens, device, dtype)
    vocab = min(base_logits.shape[-1], tuned_logits.shape[-1])
    b, t = base_logits[:, :vocab].double(), tuned_logits[:, :vocab].double()
    return [PromptDiff(p, float((t[i] - b[i]).abs().max()), bool(t[i].argmax() == b[i].argmax()),
                       base_gens[i], tuned_gens[i]) for i, p in enumerate(prompts)]


def check_finetuned(model_dir: str | Path, base_dir: str | Path | None = None, *,
                    prompts: Sequence[str] | None = None, atol: float = 0.0, logits_atol: float = 1e-4,
                    outputs: bool = True, chat_template: bool | None = None, max_new_tokens: int = 20,
                    device: str | None = None, dtype: str | None = None) -> Comparison:
    """Compare a saved adapter or merged model with its base; see Comparison.verdict."""
    model_dir = str(model_dir)
    if not Path(model_dir).is_dir():
        raise UsageError(f"model directory {model_dir} does not exist")
    adapter = is_adapter_dir(model_dir)
    if base_dir is None:
        if not adapter:
            raise UsageError(f"{model_dir} is a full model; say which base to compare it with",
                             hint="pass --base BASE_DIR")
        base_dir = adapter_base(model_dir)
    base_dir = str(base_dir)
    if not Path(base_dir).is_dir():
        raise UsageError(f"base model directory {base_dir} does not exist", hint="pass --base BASE_DIR")
    cmp = Comparison(model_dir, base_dir, "adapter" if adapter else "full", atol, logits_atol)
    if adapter:
        cmp.tensors = compare_adapter_weights(model_dir, base_dir, atol)
        if cmp.tensors and all(t.status == "lora_b_zero" for t in cmp.tensors):
            cmp.notes.append("every LoRA B matrix is zero: the adapter does not change the model")
    else:
        if Path(model_dir).resolve() == Path(base_dir).resolve():
            cmp.notes.append("the model and the base are the same directory")
        cmp.tensors = compare_full_weights(model_dir, base_dir, atol)
    if outputs:
        cmp.outputs = compare_outputs(base_dir if adapter else model_dir, model_dir if adapter else None, base_dir,
                                      list(prompts) if prompts is not None else list(DEFAULT_PROMPTS),
                                      chat_template=chat_template, max_new_tokens=max_new_tokens,
                                      device=device, dtype=dtype)
    return cmp


def iter_rows(cmp: Comparison, top: int | None = None, only_differing: bool = False) -> Iterator[TensorDiff]:
    """Tensors for display: the largest differences first."""
    rows = [t for t in cmp.tensors if t.differs or not only_differing]
    rows.sort(key=lambda t: (not t.differs, -(t.max_abs or 0.0), t.name))
    return iter(rows[:top] if top else rows)
