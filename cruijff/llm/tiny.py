"""A tiny random Llama and byte-level BPE tokenizer, built offline, for tests and CPU demos.

Nothing is downloaded: the model is random-initialised with transformers and the tokenizer is
trained with `tokenizers` on a small built-in corpus. Training reads the tokenizer through
`cruijff.train.tokenizer.hf_tokenizer` (the same AutoTokenizer and ChatML template inspect-ai
evaluates with) and the weights with `FullModelHFCheckpointer(model_type=LLAMA3)`; transformers
reads it as an ordinary Llama.
"""

from __future__ import annotations

import json
from pathlib import Path

VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# ChatML; training and evaluation both render prompts with it (docs/parity.md).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# The torchtune builder arguments that match the saved model; a manifest's `custom` family uses them.
ARCH = {
    "vocab_size": VOCAB_SIZE,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "embed_dim": 64,
    "max_seq_len": 512,
    "intermediate_dim": 128,
    "norm_eps": 1e-5,
    "rope_base": 500000,
}


def _corpus() -> list[str]:
    words = (
        "the a an of to in and or is are was were be been it this that with for on as at by from "
        "twin twins pair zygosity monozygotic dizygotic identical fraternal trait height weight "
        "yes no true false one zero 0 1 2 3 4 5 6 7 8 9 input output answer question system user "
        "assistant capitalize capitalise word letter upper lower case Apple Banana Cherry Dog "
        "house river mountain cat paper stone water fire garden window table chair music"
    ).split()
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 3)]
    lines += [w.upper() + " " + w.capitalize() + " " + w for w in words]
    return lines * 4


def build_tokenizer(out_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.model.save(str(out_dir))  # vocab.json, merges.txt
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(out_dir))


def build_tiny_llama(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random Llama (safetensors) and its tokenizer to out_dir; return out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out)
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    ids = {t: vocab[t] for t in SPECIAL_TOKENS}
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=ARCH["embed_dim"],
        intermediate_size=ARCH["intermediate_dim"],
        num_hidden_layers=ARCH["num_layers"],
        num_attention_heads=ARCH["num_heads"],
        num_key_value_heads=ARCH["num_kv_heads"],
        max_position_embeddings=ARCH["max_seq_len"],
        rms_norm_eps=ARCH["norm_eps"],
        rope_theta=float(ARCH["rope_base"]),
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        torch_dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def torchtune_model(lora: bool = True) -> dict:
    """The `_component_` dict that builds this architecture in torchtune."""
    comp = "torchtune.models.llama3.lora_llama3" if lora else "torchtune.models.llama3.llama3"
    return {"_component_": comp, **ARCH}


def torchtune_tokenizer(model_dir: str | Path) -> dict:
    """The training `tokenizer:` component for a tiny model directory (its own HF tokenizer)."""
    return {"_component_": "cruijff.train.tokenizer.hf_tokenizer", "path": str(model_dir),
            "max_seq_len": ARCH["max_seq_len"]}


def main() -> None:  # pragma: no cover - tiny CLI for scripts
    import sys

    print(build_tiny_llama(sys.argv[1] if len(sys.argv) > 1 else "tiny-llama"))


if __name__ == "__main__":  # pragma: no cover
    main()
