"""One prompt builder (cruijff.prompting.row_prompt): training, evaluation and `data stats` make
the same messages from the same row, for every row shape (issue 15, item 1)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from cruijff.data.formats import DataFormatError
from cruijff.prompting import PromptError, row_prompt

TEMPLATE, SYSTEM = "Q: {input}\nA:", "Be brief."
INSTRUCT = {"input": "cat", "output": "Cat"}
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"},
                     {"role": "user", "content": "cat"}, {"role": "assistant", "content": "Cat"}]}
CHAT_WITH_SYSTEM = {"messages": [{"role": "system", "content": "Own system."}, *CHAT["messages"]]}
TEXT = {"text": "a cat sat"}

CASES = {
    # id: (format, row, template, system, expected prompt, expected answer)
    "instruct": ("instruct_json", INSTRUCT, TEMPLATE, SYSTEM,
                 [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Q: cat\nA:"}], "Cat"),
    "chat+system": ("chat_json", CHAT, None, SYSTEM,
                    [{"role": "system", "content": SYSTEM}, *CHAT["messages"][:-1]], "Cat"),
    "chat-own-system": ("chat_json", CHAT_WITH_SYSTEM, None, SYSTEM, CHAT_WITH_SYSTEM["messages"][:-1], "Cat"),
    "text": ("text", TEXT, None, None, [], "a cat sat"),
}


def write(tmp_path, format, row):
    if format == "instruct_json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps({"train": [row], "test": [row]}))
        return path
    for split in ("train", "test"):
        (tmp_path / f"{split}.json").write_text(json.dumps([row]))
    return tmp_path


def train_messages(monkeypatch, path, format, template, system):
    """What training tokenizes: the chat given to chat_sample, or a text row's text."""
    import cruijff.train.datasets as d
    from cruijff.train.tokenizer import HFTokenizer

    monkeypatch.setattr(d, "chat_sample", lambda tok, messages, **kw: {"messages": messages})
    monkeypatch.setattr(HFTokenizer, "encode", lambda self, text, **kw: [{"role": "assistant", "content": text}])
    tok = HFTokenizer(SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=0))
    sample = d.prompted_dataset(tok, path=str(path), format=format, split="train", template=template,
                                system=system)[0]
    return sample["messages"] if "messages" in sample else sample["tokens"]


def eval_messages(path, format, template, system):
    """What inspect is fed: the Samples' chat messages and target."""
    from cruijff.tasks import load_samples

    (sample,) = load_samples(path, format=format, split="test", template=template, system=system)
    return [{"role": m.role, "content": m.text} for m in sample.input] + [
        {"role": "assistant", "content": sample.target}]


def stats_messages(row, template, system):
    from cruijff.data.stats import _messages

    prompt, answer = _messages(row, template, system)
    return prompt + answer


@pytest.mark.parametrize("case", list(CASES))
def test_train_eval_and_stats_build_the_same_messages(case, tmp_path, monkeypatch):
    format, row, template, system, prompt, answer = CASES[case]
    assert row_prompt(row, template=template, system=system) == (prompt, answer)
    full = [*prompt, {"role": "assistant", "content": answer}]
    path = write(tmp_path, format, row)
    assert train_messages(monkeypatch, path, format, template, system) == full
    assert stats_messages(row, template, system) == full
    if case == "text":  # a text row has no prompt to evaluate: evaluation refuses it
        with pytest.raises(DataFormatError, match="text row has no prompt"):
            eval_messages(path, format, template, system)
    else:
        assert eval_messages(path, format, template, system) == full


@pytest.mark.parametrize("row, kw, match", [
    ({"messages": [{"role": "user", "content": "a"}]}, {}, "does not end with an assistant answer"),
    ({"messages": [*CHAT["messages"], {"role": "user", "content": "more"}]}, {}, "does not end with"),
    ({"messages": [{"role": "assistant", "content": "A"}]}, {}, "no prompt before it"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"},
                   {"role": "assistant", "content": "A"}]}, {}, "system turn can only come first"),
    (CHAT, {"template": TEMPLATE}, "template applies to instruct rows"),
    (TEXT, {"system": SYSTEM}, "do not apply to the text format"),
    ({"input": "a", "output": None}, {}, "lacks output"),
    ({"id": 3}, {}, "none of input/output, messages or text"),
])
def test_rows_that_make_no_prompt_are_refused_everywhere_alike(row, kw, match):
    with pytest.raises(PromptError, match=match):
        row_prompt(row, **kw)


@pytest.mark.parametrize("case", ["instruct", "chat+system", "chat-own-system"])
def test_the_llm_tools_prompt_is_the_training_prompt(case):
    """logits/embeddings (cruijff.llm) build a row's prompt with inference_prompt: for a row with
    its answer it is row_prompt's prompt; without the answer it is the same prompt."""
    from cruijff.llm._prompts import PromptSettings, row_messages
    from cruijff.prompting import inference_prompt

    _, row, template, system, expected, _ = CASES[case]
    template = template if case == "instruct" else None
    assert inference_prompt(row, template=template, system=system) == row_prompt(row, template=template, system=system)[0] == expected
    assert row_messages(row, PromptSettings(template=template, system=system)) == expected
    unlabelled = {"input": row["input"]} if case == "instruct" else {"messages": row["messages"][:-1]}
    assert inference_prompt(unlabelled, template=template, system=system) == expected


def test_inference_prompt_drops_trailing_answers_and_refuses_what_training_refuses():
    from cruijff.prompting import inference_prompt

    two_answers = {"messages": [*CHAT["messages"], {"role": "assistant", "content": "More"}]}
    assert inference_prompt(two_answers) == CHAT["messages"][:-1]
    with pytest.raises(PromptError, match="template applies to instruct rows"):
        inference_prompt(CHAT, template=TEMPLATE)
    with pytest.raises(PromptError, match="unknown role 'tool'"):
        inference_prompt({"messages": [{"role": "tool", "content": "x"}, {"role": "user", "content": "y"}]})
    with pytest.raises(PromptError, match="no message before its answer"):
        inference_prompt({"messages": [{"role": "assistant", "content": "x"}]})
    with pytest.raises(PromptError, match="neither input nor messages"):
        inference_prompt({"output": "x"})
