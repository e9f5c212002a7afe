"""Real tokenizers with the chat-template styles of cruijff's model families, built offline.

- llama3: a byte-level BPE whose post-processor adds BOS (so a default tokenizer call after a
  template that writes BOS gives two) and Llama 3.2's template, which adds
  "Cutting Knowledge Date ... Today Date ..." to the system turn;
- plain: the same tokenizer without a chat template (inspect then writes `role: content` lines,
  as for a base model such as Llama-2-7b-hf).
SmolLM2's ChatML (with its default system turn) and the tiny model's ChatML come from their own
builders (cruijff.llm.smollm2, cruijff.llm.tiny). Each directory also holds a tiny random Llama, so
inspect-ai's hf provider can load it as a model.
"""

from __future__ import annotations

from pathlib import Path

LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

# Llama 3.2 Instruct's template, less the tool-calling branches.
LLAMA3_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""


def _corpus() -> list[str]:
    from cruijff.llm.tiny import _corpus as tiny_corpus

    extra = ["Cutting Knowledge Date: December 2023", "Today Date: 26 Jul 2024", "Traits: 1.79 -0.5 12",
             "Capitalize the word you are given. Answer with the word only.", "monozygotic (1) or dizygotic (0)"]
    return tiny_corpus() + extra * 4


def build_llama3_style(out_dir: Path, *, chat_template: bool = True) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=LLAMA3_SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>")
    if chat_template:
        fast.chat_template = LLAMA3_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    _random_llama(out_dir, len(fast), bos=bos, eos=fast.eos_token_id)
    return out_dir


def _random_llama(out_dir: Path, vocab: int, *, bos: int | None, eos: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
    LlamaForCausalLM(config).save_pretrained(str(out_dir), safe_serialization=True)
