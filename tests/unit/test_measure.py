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
    """The check can fail: batched calls that tokenize or render differently are caught on the rows checked."""
    from cruijff.train import bulk

    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": rows(40), "validation": rows(5, 1), "test": rows(5, 2)}))
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(data),
                 "format": "instruct_json", "split": "train", "template": "Q: {input}\nA:", "system": "Answer.",
                 "train_on_input": False, "packed": False}
    tokenizer = measure._instantiate({"_component_": "cruijff.train.tokenizer.hf_tokenizer",
                                      "path": str(tiny_model_dir), "max_seq_len": 400})
    full_rows = unpacked(measure._instantiate(component, _whole(tokenizer)))
    assert measure._measure_batched(full_rows, 400, component) is not None
    encoder = bulk.encoder
    monkeypatch.setattr(bulk, "encoder", lambda hf, args: (lambda texts: encoder(hf, args)([t + "!" for t in texts])))
    assert measure._measure_batched(full_rows, 400, component) is None
    monkeypatch.undo()
    call = bulk.ChatRenderer.__call__
    monkeypatch.setattr(bulk.ChatRenderer, "__call__", lambda self, m, g: call(self, m, g).replace("Q:", "Q :"))
    assert measure._measure_batched(full_rows, 400, component) is None
    monkeypatch.undo()
    monkeypatch.setattr("cruijff.prompting.EVAL_TOKENIZER_CALL_ARGS", {"add_special_tokens": False, "truncation": True, "max_length": 3})
    assert measure._measure_batched(full_rows, 400, component) is None  # a call the Rust tokenizer is not given alone


# --- string-join renders (issue 27.5): only for templates that copy contents verbatim ---

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
          "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.mark.parametrize("template,copies", [
    (CHATML, True),
    ("{% for m in messages %}{{ '<' + m.role + '>' + m.content ~ '</s>' }}{% endfor %}", True),
    ("{% for m in messages %}{{ m['content'] | trim }}{% endfor %}", False),
    ("{% for m in messages %}{% if '</think>' in m['content'] %}T{% endif %}{{ m['content'] }}{% endfor %}", False),
    ("{% for m in messages %}{{ m.get('content') }}{% endfor %}", False),
    ("{% for m in messages %}{% set c = m['content'] %}{{ c }}{% endfor %}", False),
    ("{% filter upper %}{% for m in messages %}{{ m['content'] }}{% endfor %}{% endfilter %}", False),
    ("{% for m in messages %}{{ m['content'] if m['role'] == 'user' else '' }}{% endfor %}", False),
    ("{% generation %}{% endgeneration %}", False),
])
def test_which_templates_copy_contents(template, copies):
    from cruijff.train.bulk import copies_content

    assert copies_content(template) is copies


def _jinja(template):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    compiled = ImmutableSandboxedEnvironment().from_string(template)
    calls = []

    def render(messages, *, add_generation_prompt):
        calls.append(len(messages))
        return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt)
    return render, calls


ODD = ["", " lead and trail \n", "{{ braces }} {% x %}", " \n\ue000c0C\ue001\n ", "<|im_end|>", "ünïcödé\t"]


def test_joined_renders_equal_the_template_renders():
    from cruijff.train.bulk import ChatRenderer

    render, calls = _jinja(CHATML)
    joined = ChatRenderer(render, CHATML)
    for k, text in enumerate(ODD * 3):
        chat = [{"role": "system", "content": text}, {"role": "user", "content": ODD[k % 6 - 1]},
                {"role": "assistant", "content": text[::-1]}]
        for messages in (chat, chat[1:], chat[:2], chat[1:2]):
            for g in (True, False):
                assert joined(messages, g) == render(messages, add_generation_prompt=g)
    assert len(joined._skeletons) == 8 and all(joined._skeletons.values())
    assert calls.count(3) == 2 * 18 + 2  # the reference renders above, and 2 sentinel renders: none by the joins


@pytest.mark.parametrize("template", [
    "{% for m in messages %}{{ m['content'] | trim }}|{% endfor %}",
    "{{ messages | tojson }}",  # reads no `content` key, but escapes the sentinels: seen in their render
    "{% for m in messages %}{% if loop.first %}{{ m['content'] }}{% endif %}{% endfor %}",  # drops a turn
])
def test_templates_that_change_or_drop_contents_are_rendered_per_row(template):
    from cruijff.train.bulk import ChatRenderer

    render, calls = _jinja(template)
    joined = ChatRenderer(render, template)
    chat = [{"role": "user", "content": " a "}, {"role": "assistant", "content": " b\n"}]
    for _ in range(3):
        assert joined(chat, False) == render(chat, add_generation_prompt=False)
    assert not any(joined._skeletons.values())


def test_a_trimming_template_counts_padded_rows_as_the_per_row_build(llama3_dirs, tmp_path, monkeypatch):
    """Llama 3 trims contents: string joins would keep the padding, so its rows are rendered per row."""
    rnd = random.Random(3)
    padded = [{"input": " " * rnd.randint(0, 3) + r["input"] + "\n" * rnd.randint(0, 2),
               "output": r["output"] + " " * rnd.randint(0, 3)} for r in rows(80)]
    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": padded, "validation": rows(5, 1), "test": rows(5, 2)}))
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(data),
                 "format": "instruct_json", "split": "train", "template": "{input}", "system": " Answer. ",
                 "train_on_input": False, "packed": False}
    batched, per_row = both_ways(llama3_dirs["llama3"], 400, component, monkeypatch)
    assert batched == per_row


# --- counting without encoding (issue 27.5): distinct pieces tokenized once, for byte-level BPE ---

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
TEXTS = ["", " ", "a  b\n\n c <|im_end|>x", "It's  THE 12345 cat's\t\tend.\r\n", "<|im_start|><|im_end|>",
         "   trailing   ", "x<|endoftext|>y<|im_start|>", "!!?? ..  --\n \n", "don'T 7 77 777 7777",
         "é ünïcödé", "ctrl\x1f\x0bchar", "tab\tand\x7f"]


def _pre_tokenized(tiny_model_dir, pre_tokenizer):
    from tokenizers import Regex, pre_tokenizers
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    if pre_tokenizer == "split":  # Llama 3's way: its own pattern, then bytes without GPT-2's
        hf._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"), pre_tokenizers.ByteLevel(False, use_regex=False)])
    elif pre_tokenizer in ("digits", "digit runs"):  # SmolLM2's way: digits cut out first
        hf._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(pre_tokenizer == "digits"), pre_tokenizers.ByteLevel(False)])
    elif pre_tokenizer in ("gaps", "empty"):  # text left between matches; matches of no text (encoded)
        pattern = r"\d+|cat" if pre_tokenizer == "gaps" else r"\d*|cat"
        hf._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), "isolated"), pre_tokenizers.ByteLevel(False)])
    return hf


@pytest.mark.parametrize("pre_tokenizer", ["bytelevel", "split", "digits", "digit runs", "gaps", "empty"])
@pytest.mark.parametrize("special", [False, True])
def test_counts_without_encoding_equal_the_encoded_counts(tiny_model_dir, pre_tokenizer, special, monkeypatch):
    from cruijff.train import bulk

    hf = _pre_tokenized(tiny_model_dir, pre_tokenizer)
    eos = hf.eos_token_id
    count = bulk.counter(hf, {"add_special_tokens": special}, eos)
    assert count.__name__ == "counts"  # pieces counted, not encoded
    texts = TEXTS + [" ".join(rows(3, seed)[k]["input"] for k in range(3)) for seed in range(20)]
    encoded = hf._tokenizer.encode_batch(texts, add_special_tokens=special)
    assert count(texts) == [(len(e), eos in e.ids) for e in encoded]
    monkeypatch.setattr(bulk, "MEMO", 3)  # forgetting pieces and segments changes nothing
    monkeypatch.setattr(bulk, "RECENT", 2)
    assert count(texts) == [(len(e), eos in e.ids) for e in encoded]


def test_tokenizers_that_change_the_text_are_encoded(tiny_model_dir):
    """A normalizer, or a pre-tokenizer other than byte-level splits: every text is encoded."""
    from tokenizers import normalizers, pre_tokenizers

    from cruijff.train import bulk

    hf = _pre_tokenized(tiny_model_dir, "bytelevel")
    hf._tokenizer.normalizer = normalizers.Lowercase()
    assert bulk.counter(hf, {"add_special_tokens": False}).__name__ == "encoded"
    count = bulk.counter(hf, {"add_special_tokens": False})
    assert count(["The CAT"]) == [(len(hf("The CAT", add_special_tokens=False)["input_ids"]), False)]
    hf = _pre_tokenized(tiny_model_dir, "bytelevel")
    hf._tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Punctuation(),
                                                           pre_tokenizers.ByteLevel(False)])
    assert bulk.counter(hf, {"add_special_tokens": False}).__name__ == "encoded"


@pytest.mark.parametrize("pattern,ok", [(LLAMA3_PATTERN, True), (r" ?\p{Lu}+", False), (r"[a[b]]", False),
                                        (r"\p{L}+\X", False)])
def test_which_split_patterns_are_counted_in_python(pattern, ok):
    from cruijff.train.bulk import _ascii_pattern

    assert (_ascii_pattern(pattern) is not None) is ok


@pytest.mark.parametrize("data", ["instruct", "chats"])
def test_chunks_shared_out_over_processes_count_as_one_process(tiny_model_dir, tmp_path, monkeypatch, data):
    """A big split's chunks are measured by a process per core (cruijff.cores): the same counts,
    the exact per-row build included (chat rows with earlier answers), in the same order."""
    from cruijff import cores

    from cruijff.data.convert import write_chat_json

    split = rows(150) if data == "instruct" else chats(150)
    path = tmp_path / "d.json"
    if data == "instruct":
        path.write_text(json.dumps({"train": split, "validation": split[:5], "test": split[:5]}))
    else:
        write_chat_json(path, {"train": split, "validation": split[:5], "test": split[:5]})
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(path),
                 "format": "instruct_json" if data == "instruct" else "chat_json", "split": "train",
                 "template": "Q: {input}\nA:" if data == "instruct" else None, "system": None,
                 "train_on_input": False, "packed": False, "style": "chat"}
    monkeypatch.setattr(measure, "CHUNK", 16)
    monkeypatch.setattr(cores, "workers", lambda: 2)
    monkeypatch.setattr(measure, "PARALLEL_FROM", 10**9)
    one, per_row = both_ways(tiny_model_dir, 14, component, monkeypatch)
    monkeypatch.setattr(measure, "BATCHED", True)
    monkeypatch.setattr(measure, "PARALLEL_FROM", 16)  # every split of more than one chunk
    forked = []
    monkeypatch.setattr(cores, "_fork", lambda work, share, real=cores._fork: forked.append(len(share)) or real(work, share))
    tokenizer = measure._instantiate({"_component_": "cruijff.train.tokenizer.hf_tokenizer",
                                      "path": str(tiny_model_dir), "max_seq_len": 14})
    assert measure.measure_split(tokenizer, component) == one == per_row
    assert forked == [len(range(0, 150, 16)) // 2], "the chunks were not shared out"
    assert one["empty"] > 0 and one["truncated"] > 0
