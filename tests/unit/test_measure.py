"""The token-fit measurement tokenizes each row once (issue 27.5): its counts equal those of
building every row as training does (with the limit) and again without it, the former way.

Real tokenizer (the tiny model's), real datasets built by cruijff.train.datasets.
"""

from __future__ import annotations

import copy
import json
import random

import pytest

pytest.importorskip("torchtune")

from cruijff.train import measure  # noqa: E402
from cruijff.train.trainable import unpacked  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]


def rows(n: int, seed: int = 0) -> list[dict]:
    rnd = random.Random(seed)
    return [{"input": " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 25))),
             "output": " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 15)))} for _ in range(n)]


@pytest.mark.parametrize("style", ["chat", "text_completion"])
@pytest.mark.parametrize("train_on_input", [False, True])
@pytest.mark.parametrize("limit", [12, 40, 400])
def test_one_pass_counts_equal_the_two_pass_counts(tiny_model_dir, tmp_path, style, train_on_input, limit):
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": rows(120), "validation": rows(5, 1), "test": rows(5, 2)}))
    tokenizer = measure._instantiate({"_component_": "cruijff.train.tokenizer.hf_tokenizer",
                                      "path": str(tiny_model_dir), "max_seq_len": limit})
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(data),
                 "format": "instruct_json", "split": "train", "template": "Q: {input}\nA:",
                 "system": None if style != "chat" else "Answer.", "train_on_input": train_on_input,
                 "packed": False, **({"style": style} if style != "chat" else {})}
    one = measure.measure_split(tokenizer, component)
    whole = copy.copy(tokenizer)
    whole.max_seq_len = None
    two = measure._measure_both_ways(tokenizer, component, unpacked(measure._instantiate(component, whole)))
    assert one == two
    assert one["rows"] == 120 and (one["truncated"] > 0) == (limit < one["longest"])
