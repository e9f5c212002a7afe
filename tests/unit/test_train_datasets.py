"""prompted_dataset, per format, with the tiny model's own HF tokenizer (the training tokenizer)."""

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
    from cruijff.llm.tiny import build_tokenizer, torchtune_tokenizer

    d = tmp_path_factory.mktemp("tok")
    build_tokenizer(d)
    # instantiated as torchtune's recipes do, from the component the tiny model's configs carry
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
    # the answer and the template's end of turn are trained (the model learns to stop); the
    # generation prompt `<|im_start|>assistant\n` is the end of the prompt, as at evaluation
    assert trained == "Apple<|im_end|>\n"


def test_a_truncated_sample_keeps_max_seq_len(tok, instruct_file):
    ds = build(tok, path=str(instruct_file), format="instruct_json", split="train")
    full = ds[0]["tokens"]
    tok.max_seq_len, saved = len(full) - 2, tok.max_seq_len
    try:
        s = build(tok, path=str(instruct_file), format="instruct_json", split="train")[0]
    finally:
        tok.max_seq_len = saved
    assert s["tokens"] == full[:-2] and len(s["labels"]) == len(full) - 2


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
    assert trained == "yes<|im_end|>\nno<|im_end|>\n"  # every answer, no user turn


def test_parquet_instruct_and_messages(tok, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = tmp_path / "a"
    a.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS["train"]), a / "train.parquet")
    ds = build(tok, path=str(a), format="parquet", split="train", template="Capitalize: {input}")
    assert len(ds) == 2 and trained_text(tok, ds[1]).startswith("Dog")

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
    f = tmp_path / "corpus.txt"  # the text format's one-file layout (cruijff.data.formats)
    f.write_text("the cat\n\n")
    assert len(build(tok, path=str(f), format="text", split="train")) == 1
    from cruijff.data.formats import DataFormatError

    with pytest.raises(DataFormatError, match="split file missing: 'validation'"):
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
    with pytest.raises(CruijffError, match="split file missing: 'dev'"):
        build(tok, path=str(instruct_file), format="instruct_json", split="dev")
    with pytest.raises(CruijffError, match="dataset not found"):
        build(tok, path=str(tmp_path / "missing.json"), format="instruct_json", split="train")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": [{"input": "x", "output": "X"}, {"input": "y"}]}))
    with pytest.raises(CruijffError, match=r"train\[1\] is missing 'output'"):
        build(tok, path=str(bad), format="instruct_json", split="train")
    (tmp_path / "train.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "hi"}]}]))
    with pytest.raises(CruijffError, match="row 0"):
        build(tok, path=str(tmp_path), format="chat_json", split="train")
    with pytest.raises(CruijffError, match="instruct rows"):
        build(tok, path=str(tmp_path), format="chat_json", split="train", template="Q: {input}")
    with pytest.raises(CruijffError, match="split file missing: 'test'"):
        build(tok, path=str(tmp_path), format="chat_json", split="test")


def test_prompt_ids_are_the_eval_prompt(tok, instruct_file):
    """The masked prefix is apply_chat_template(prompt, add_generation_prompt=True) tokenized
    with the eval call (no added special tokens) - the ids inspect's hf provider feeds."""
    from cruijff.prompting import EVAL_TOKENIZER_CALL_ARGS, build_messages

    s = build(tok, path=str(instruct_file), format="instruct_json", split="train",
              template="Capitalize: {input}", system="Be exact.")[0]
    prompt = tok.hf.apply_chat_template(build_messages("apple", template="Capitalize: {input}", system="Be exact."),
                                        add_generation_prompt=True, tokenize=False)
    ids = tok.hf(prompt, **EVAL_TOKENIZER_CALL_ARGS)["input_ids"]
    n = len(ids)
    assert s["tokens"][:n] == ids and all(int(x) == IGNORE for x in s["labels"][:n])
    assert int(s["labels"][n]) != IGNORE


def test_a_template_that_rewrites_the_prompt_is_refused(tok, instruct_file):
    """A template whose generation prompt is not the start of the answer turn cannot give parity."""
    from cruijff.errors import CruijffError

    saved = tok.hf.chat_template
    tok.hf.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                            "{% if add_generation_prompt %}ASSISTANT:{% endif %}")
    try:
        with pytest.raises(CruijffError, match="prefix of the whole chat"):
            build(tok, path=str(instruct_file), format="instruct_json", split="train")[0]
    finally:
        tok.hf.chat_template = saved


def test_a_torchtune_tokenizer_is_refused(instruct_file):
    from cruijff.errors import CruijffError

    with pytest.raises(CruijffError, match="hf_tokenizer"):
        build(object(), path=str(instruct_file), format="instruct_json", split="train")


def test_text_completion_trains_the_plain_prompt_text(tok, instruct_file):
    """style text_completion: the masked prefix is the templated text tokenized with the tokenizer's
    own special tokens (no chat template); the answer and EOS are trained."""
    s = build(tok, path=str(instruct_file), format="instruct_json", split="train",
              template="Word: {input}\nCapitalized: ", style="text_completion")[0]
    prompt = tok.hf("Word: apple\nCapitalized: ")["input_ids"]
    n = len(prompt)
    assert s["tokens"][:n] == prompt and all(int(x) == IGNORE for x in s["labels"][:n])
    assert s["tokens"][n:] == s["labels"][n:] == tok.hf("Apple", add_special_tokens=False)["input_ids"] + [tok.eos_id]
    assert "<|im_start|>" not in whole_text(tok, s)


def test_text_completion_train_on_input_trains_everything(tok, instruct_file):
    s = build(tok, path=str(instruct_file), format="instruct_json", split="train", template="{input} ",
              style="text_completion", train_on_input=True)[0]
    assert s["labels"] == s["tokens"]


@pytest.mark.parametrize("kw, match", [
    ({"system": "Be exact."}, "system prompt has no place"),
    ({"style": "plain"}, "unknown prompt style"),
])
def test_text_completion_refusals(tok, instruct_file, kw, match):
    from cruijff.train.rows import DatasetError

    with pytest.raises(DatasetError, match=match):
        build(tok, path=str(instruct_file), format="instruct_json", split="train",
              **{"style": "text_completion", **kw})


def test_text_completion_refuses_chat_rows(tok, tmp_path):
    from cruijff.train.rows import DatasetError

    (tmp_path / "train.json").write_text(json.dumps([{"messages": [{"role": "user", "content": "a"},
                                                                   {"role": "assistant", "content": "A"}]}]))
    with pytest.raises(DatasetError, match="text_completion prompts are built from instruct rows"):
        build(tok, path=str(tmp_path), format="chat_json", split="train", style="text_completion")
