"""`cruijff plan` measures the rows with the real tokenizer, in its real subprocess (issue 12.1).

The tiny Llama's own tokenizer and chat template; the measurement must agree with the count the
recipe makes at setup (check_trainable on the dataset built from the rendered finetune.yaml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

MANIFEST = """\
experiment: fit
output_dir: out
models:
  tiny:
    path: {model}
    family: custom
    builder: {{_component_: torchtune.models.llama3.lora_llama3, vocab_size: 512, num_layers: 2, num_heads: 4,
               num_kv_heads: 2, embed_dim: 64, max_seq_len: 512, intermediate_dim: 128}}
    checkpoint_files: [model.safetensors]
    model_type: LLAMA3
datasets:
  words: {{path: long_short.json, format: instruct_json}}
prompt: {{system: Capitalize the word., template: "Word: {{input}}"}}
finetune:
  hyperparameters: {{epochs: 3, batch_size: 1, warmup_steps: 0}}
  resources: {{gpus: 0}}
grid:
  max_seq_len: [{max_seq_len}]
"""
LEN_AT = "18:17"


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    """Four rows whose long prompt does not fit a short max_seq_len, then four short ones."""
    long = " ".join(["apple banana cherry"] * 12)
    rows = ([{"input": f"{long} {i}", "output": "Yes"} for i in range(4)]
            + [{"input": w, "output": w.upper()} for w in ("dog", "cat", "sun", "sea")])
    (tmp_path / "long_short.json").write_text(json.dumps({"train": rows, "validation": rows[4:], "test": rows[4:]}))
    return tmp_path


def cruijff_plan(project: Path, model: Path, max_seq_len: int) -> subprocess.CompletedProcess:
    path = project / "m.yaml"
    path.write_text(MANIFEST.format(model=model, max_seq_len=max_seq_len))
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "cruijff", "plan", str(path)], capture_output=True, text=True,
                          env=env, cwd=project, timeout=300)


def test_plan_refuses_a_max_seq_len_that_cuts_every_answer(project, tiny_model_dir):
    proc = cruijff_plan(project, tiny_model_dir, 8)
    assert proc.returncode == 2, proc.stderr
    assert (f"m.yaml:{LEN_AT}: run 'tiny_words_len8' would train on no token: with max_seq_len 8, every one of "
            "the 8 rows of the train split 'train' of dataset 'words' with model 'tiny''s tokenizer and chat "
            "template loses its whole answer to truncation") in proc.stderr
    assert "raise max_seq_len to" in proc.stderr and "Traceback" not in proc.stderr
    assert not (project / "out").exists(), "nothing written"


def test_the_measurement_agrees_with_the_recipes_own_count(project, tiny_model_dir):
    """Plan's numbers are those the recipe's setup check finds on the dataset finetune.yaml builds."""
    from omegaconf import OmegaConf
    from torchtune import config

    from cruijff.compiler.token_fit import CACHE_FILE
    from cruijff.train.tokenizer import chat_sample
    from cruijff.train.trainable import check_trainable

    limit = 40
    proc = cruijff_plan(project, tiny_model_dir, limit)
    assert proc.returncode == 0, proc.stderr
    [entry] = json.loads((project / "out" / CACHE_FILE).read_text())["entries"].values()
    measured = entry["splits"]["train"]

    cfg = OmegaConf.load(project / "out" / "finetune" / f"tiny_words_len{limit}" / "finetune.yaml")
    tokenizer = config.instantiate(cfg.tokenizer)
    empty = check_trainable(config.instantiate(cfg.dataset, tokenizer), ignore_index=-100, split="training",
                            max_seq_len=limit)
    assert empty == [0, 1, 2, 3]  # the fixture cuts the long rows only: the comparison can fail
    assert (measured["rows"], measured["empty"], measured["empty_rows"]) == (8, len(empty), empty)
    assert f"4 of the 8 rows of the train split 'train' of dataset 'words'" in proc.stderr
    assert "4 of them keep no answer token" in proc.stderr

    from cruijff.prompting import build_messages

    tokenizer.max_seq_len = None  # whole rows, as the chat template renders them
    rows = json.loads((project / "long_short.json").read_text())["train"]
    lengths = [len(chat_sample(tokenizer, build_messages(r["input"], template="Word: {input}",
                                                         system="Capitalize the word.", output=r["output"]))["tokens"])
               for r in rows]
    assert measured["truncated"] == sum(n > limit for n in lengths)
    assert measured["longest"] == max(lengths)
    assert f"raise max_seq_len to {max(lengths)}" in proc.stderr
