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


# --- the batched way (issue 27.5): chunks of rows in one tokenizer call, equal to the per-row build ---

@pytest.fixture(scope="module")
def llama3_dirs(tmp_path_factory):
    from tests.chat_tokenizers import build_llama3_style

    root = tmp_path_factory.mktemp("llama3-style")
    return {"llama3": build_llama3_style(root / "with"), "plain": build_llama3_style(root / "plain", chat_template=False)}


def chats(n: int, seed: int = 0) -> list[dict]:
    """Chat rows; every third one has an earlier assistant turn (left to the per-row build)."""
    rnd = random.Random(seed)
    say = lambda k: " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, k)))  # noqa: E731
    out = []
    for i in range(n):
        turns = [{"role": "user", "content": say(20)}]
        if i % 3 == 0:
            turns += [{"role": "assistant", "content": say(8)}, {"role": "user", "content": say(10)}]
        out.append({"messages": [*turns, {"role": "assistant", "content": say(12)}]})
    return out


def both_ways(tokenizer_dir, limit, component, monkeypatch):
    tokenizer = measure._instantiate({"_component_": "cruijff.train.tokenizer.hf_tokenizer",
                                      "path": str(tokenizer_dir), "max_seq_len": limit})
    batched = measure._measure_batched(
        unpacked(measure._instantiate({**component, "packed": False}, _whole(tokenizer))), limit, component)
    assert batched is not None  # the batched way was taken (its check against the per-row build passed)
    assert measure.measure_split(tokenizer, component) == batched
    monkeypatch.setattr(measure, "BATCHED", False)
    return batched, measure.measure_split(tokenizer, component)


def _whole(tokenizer):
    whole = copy.copy(tokenizer)
    whole.max_seq_len = None
    return whole


@pytest.mark.parametrize("model", ["tiny", "llama3", "plain"])
@pytest.mark.parametrize("style,system", [("chat", None), ("chat", "Answer."), ("text_completion", None)])
@pytest.mark.parametrize("limit,train_on_input", [(3, False), (3, True), (14, False), (400, True)])
def test_batched_counts_equal_the_per_row_counts(tiny_model_dir, llama3_dirs, tmp_path, monkeypatch,
                                                 model, style, system, train_on_input, limit):
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": rows(150), "validation": rows(5, 1), "test": rows(5, 2)}))
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(data),
                 "format": "instruct_json", "split": "train", "template": "Q: {input}\nA:", "system": system,
                 "train_on_input": train_on_input, "packed": False, "style": style}
    folder = tiny_model_dir if model == "tiny" else llama3_dirs[model]
    batched, per_row = both_ways(folder, limit, component, monkeypatch)
    assert batched == per_row
    assert batched["rows"] == 150 and (batched["truncated"] > 0) == (limit < batched["longest"])
    if limit == 3 and not train_on_input:
        assert batched["empty"] > 0  # answers cut away are counted the same way


@pytest.mark.parametrize("model", ["tiny", "llama3"])
@pytest.mark.parametrize("limit", [10, 30, 400])
def test_batched_chat_rows_with_earlier_answers_equal_the_per_row_counts(tiny_model_dir, llama3_dirs, tmp_path,
                                                                         monkeypatch, model, limit):
    from cruijff.data.convert import write_chat_json

    data = tmp_path / "chat"
    write_chat_json(data, {"train": chats(60), "validation": chats(3, 1), "test": chats(3, 2)})
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(data),
                 "format": "chat_json", "split": "train", "system": "Be brief.", "train_on_input": False,
                 "packed": False}
    folder = tiny_model_dir if model == "tiny" else llama3_dirs[model]
    batched, per_row = both_ways(folder, limit, component, monkeypatch)
    assert batched == per_row


def test_a_difference_from_the_per_row_build_measures_the_split_row_by_row(tiny_model_dir, tmp_path, monkeypatch):
    """The check can fail: a batched call that tokenizes differently is caught on the rows checked."""
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": rows(40), "validation": rows(5, 1), "test": rows(5, 2)}))
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(data),
                 "format": "instruct_json", "split": "train", "template": "Q: {input}\nA:", "system": "Answer.",
                 "train_on_input": False, "packed": False}
    tokenizer = measure._instantiate({"_component_": "cruijff.train.tokenizer.hf_tokenizer",
                                      "path": str(tiny_model_dir), "max_seq_len": 400})
    full_rows = unpacked(measure._instantiate(component, _whole(tokenizer)))
    monkeypatch.setattr("cruijff.prompting.EVAL_TOKENIZER_CALL_ARGS", {"add_special_tokens": False, "truncation": True, "max_length": 3})
    assert measure._measure_batched(full_rows, 400, component) is None
    monkeypatch.undo()
    assert measure._measure_batched(full_rows, 400, component) is not None
