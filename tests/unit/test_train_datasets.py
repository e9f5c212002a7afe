"""prompted_dataset, per format, with the tiny tokenizer read by torchtune's Qwen2 tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require

IGNORE = -100


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    try:
        from omegaconf import OmegaConf
        from torchtune import config
    except ImportError:  # pragma: no cover - depends on the environment
        require(False, "torchtune is not installed")
    from cruijff.tiny import build_tokenizer, torchtune_tokenizer

    d = tmp_path_factory.mktemp("tok")
    build_tokenizer(d)
    return config.instantiate(OmegaConf.create(torchtune_tokenizer(d)))


def build(tok, **kw):
    from cruijff.train.datasets import prompted_dataset

    return prompted_dataset(tok, **kw)


def trained_text(tok, sample) -> str:
    return tok.decode([t for t, l in zip(sample["tokens"], sample["labels"]) if int(l) != IGNORE],
                      skip_special_tokens=False)


def whole_text(tok, sample) -> str:
    return tok.decode(sample["tokens"], skip_special_tokens=False)


ROWS = {"train": [{"input": "apple", "output": "Apple"}, {"input": "dog", "output": "Dog"}],
        "validation": [{"input": "cat", "output": "Cat"}],
        "test": [{"input": "river", "output": "River"}]}


@pytest.fixture
def instruct_file(tmp_path) -> Path:
    f = tmp_path / "cap.json"
    f.write_text(json.dumps(ROWS))
    return f


def test_instruct_json_prompt_and_loss_mask(tok, instruct_file):
    ds = build(tok, path=str(instruct_file), format="instruct_json", split="train",
               template="Capitalize: {input}", system="Be exact.")
    assert len(ds) == 2
    s = ds[0]
    assert len(s["tokens"]) == len(s["labels"])
    text = whole_text(tok, s)
    assert text.startswith("<|im_start|>system\nBe exact.<|im_end|>\n<|im_start|>user\nCapitalize: apple<|im_end|>")
    # loss only on the assistant turn: nothing of the system/user turns is trained
    trained = trained_text(tok, s)
    # the closing <|im_end|> is trained too, or the model never learns to stop
    assert trained == "<|im_start|>assistant\nApple<|im_end|>"


def test_a_truncated_answer_does_not_learn_to_stop(tok, instruct_file):
    ds = build(tok, path=str(instruct_file), format="instruct_json", split="train")
    full = len(ds[0]["tokens"])
    tok.max_seq_len, saved = full - 1, tok.max_seq_len
    try:
        s = build(tok, path=str(instruct_file), format="instruct_json", split="train")[0]
    finally:
        tok.max_seq_len = saved
    assert len(s["tokens"]) == full - 1 and int(s["labels"][-1]) == IGNORE


def test_instruct_uses_the_shared_prompt_builder(tok, instruct_file):
    """The user turn is exactly cruijff.prompting.build_messages' content (what evaluation sends)."""
    from cruijff.prompting import build_messages

    ds = build(tok, path=str(instruct_file), format="instruct_json", split="validation",
               template="Q: {input} {not a placeholder}")
    user = build_messages("cat", template="Q: {input} {not a placeholder}")[-1]["content"]
    assert f"<|im_start|>user\n{user}<|im_end|>" in whole_text(tok, ds[0])


def test_train_on_input_trains_every_turn(tok, instruct_file):
    ds = build(tok, path=str(instruct_file), format="instruct_json", split="train", train_on_input=True)
    s = ds[1]
    trained = [int(l) for l in s["labels"][:-1]]
    assert trained == [int(t) for t in s["tokens"][:-1]]


def test_splits_are_separate(tok, instruct_file):
    for split, word in (("validation", "cat"), ("test", "river")):
        ds = build(tok, path=str(instruct_file), format="instruct_json", split=split)
        assert len(ds) == 1 and word in whole_text(tok, ds[0])


def test_chat_json_folder(tok, tmp_path):
    conv = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "yes"},
                         {"role": "user", "content": "again"}, {"role": "assistant", "content": "no"}]}
    (tmp_path / "train.json").write_text(json.dumps([conv]))
    ds = build(tok, path=str(tmp_path), format="chat_json", split="train", system="sys")
    s = ds[0]
    text = whole_text(tok, s)
    assert text.startswith("<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nhello")
    trained = trained_text(tok, s)
    assert "yes" in trained and "no" in trained and "hello" not in trained and "again" not in trained


def test_parquet_instruct_and_messages(tok, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = tmp_path / "a"
    a.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS["train"]), a / "train.parquet")
    ds = build(tok, path=str(a), format="parquet", split="train", template="Capitalize: {input}")
    assert len(ds) == 2 and trained_text(tok, ds[1]).startswith("<|im_start|>assistant\nDog")

    b = tmp_path / "b"
    b.mkdir()
    msgs = [{"messages": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "1"}]}]
    pq.write_table(pa.Table.from_pylist(msgs), b / "validation.parquet")
    ds = build(tok, path=str(b), format="parquet", split="validation")
    assert "1" in trained_text(tok, ds[0]) and "one" not in trained_text(tok, ds[0])


def test_text_completion_trains_on_everything(tok, tmp_path):
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in ("the cat", "a dog")))
    ds = build(tok, path=str(tmp_path), format="text", split="train")
    s = ds[0]
    assert [int(x) for x in s["labels"]] == [int(x) for x in s["tokens"]]
    assert s["tokens"][-1] == tok.eos_id and tok.decode(s["tokens"]).startswith("the cat")


def test_text_file_without_splits_is_train_only(tok, tmp_path):
    f = tmp_path / "corpus.jsonl"
    f.write_text(json.dumps({"text": "the cat"}) + "\n")
    assert len(build(tok, path=str(f), format="text", split="train")) == 1
    from cruijff.train.rows import DatasetError

    with pytest.raises(DatasetError, match="no 'validation' split"):
        build(tok, path=str(f), format="text", split="validation")


def test_packed_and_max_seq_len(tok, instruct_file):
    ds = build(tok, path=str(instruct_file), format="instruct_json", split="train", max_seq_len=5)
    assert len(ds[0]["tokens"]) == 5 and len(ds[0]["labels"]) == 5
    packed = build(tok, path=str(instruct_file), format="instruct_json", split="train", packed=True,
                   max_seq_len=64)
    assert len(packed) == 1 and len(packed[0]["tokens"]) == 64


def test_errors_are_clear(tok, tmp_path, instruct_file):
    from cruijff.errors import CruijffError

    with pytest.raises(CruijffError, match="unknown dataset format"):
        build(tok, path=str(instruct_file), format="csv", split="train")
    with pytest.raises(CruijffError, match="no 'dev' split"):
        build(tok, path=str(instruct_file), format="instruct_json", split="dev")
    with pytest.raises(CruijffError, match="dataset not found"):
        build(tok, path=str(tmp_path / "missing.json"), format="instruct_json", split="train")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [{"input": "x", "output": "X"}, {"input": "y"}]}))
    with pytest.raises(CruijffError, match=r"row 1 lacks output"):
        build(tok, path=str(bad), format="instruct_json", split="train")
    (tmp_path / "train.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "hi"}]}]))
    with pytest.raises(CruijffError, match="row 0"):
        build(tok, path=str(tmp_path), format="chat_json", split="train")
    with pytest.raises(CruijffError, match="instruct rows"):
        build(tok, path=str(tmp_path), format="chat_json", split="train", template="Q: {input}")
    with pytest.raises(CruijffError, match="no 'test' split in dataset folder"):
        build(tok, path=str(tmp_path), format="chat_json", split="test")
