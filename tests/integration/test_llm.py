"""cruijff.llm on the tiny model, on CPU, against direct transformers forward passes."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import require

for _mod in ("torch", "transformers", "peft", "h5py"):
    require(importlib.util.find_spec(_mod) is not None, f"{_mod} is not installed")

import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from cruijff import llm  # noqa: E402
from cruijff.errors import UsageError  # noqa: E402
from cruijff.prompting import build_messages  # noqa: E402

PROMPTS = ["the twins are identical", "a", "fraternal twin pair with different height and weight"]


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return llm.load_model(tiny_model_dir, device="cpu")


def direct_forward(lm, text: str):
    """The reference: one unpadded prompt through transformers, no cruijff code on the way."""
    ids = lm.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return lm.model(input_ids=ids, output_hidden_states=True)


def test_load_picks_cpu_float32_and_keeps_the_pad_token(lm):
    assert lm.device == "cpu" and lm.model.dtype == torch.float32
    assert lm.tokenizer.pad_token == "<|endoftext|>" and lm.notes == []
    assert lm.adapter_dir is None


def test_logits_match_direct_forward_with_left_padding(lm):
    assert len({len(lm.tokenizer.encode(p)) for p in PROMPTS}) == 3  # different lengths → padding
    result = llm.next_token_logits(lm.model, lm.tokenizer, PROMPTS, batch_size=3)
    assert result.logits.shape == (3, 512)
    for i, p in enumerate(PROMPTS):
        expected = direct_forward(lm, p).logits[0, -1]
        torch.testing.assert_close(result.logits[i], expected, atol=1e-5, rtol=0)


def test_logits_with_chat_template_prompts(lm):
    texts = llm.prompt_texts(lm.tokenizer, [{"input": p} for p in PROMPTS], llm.PromptSettings(system="Be brief."))
    result = llm.next_token_logits(lm.model, lm.tokenizer, texts, batch_size=2)
    for i, t in enumerate(texts):
        torch.testing.assert_close(result.logits[i], direct_forward(lm, t).logits[0, -1], atol=1e-5, rtol=0)


def test_answer_restricted_logits_and_probabilities(lm):
    full = llm.next_token_logits(lm.model, lm.tokenizer, PROMPTS)
    restricted = llm.next_token_logits(lm.model, lm.tokenizer, PROMPTS, answers=["0", "1"])
    ids = restricted.token_ids
    assert ids == [lm.tokenizer.convert_tokens_to_ids("0"), lm.tokenizer.convert_tokens_to_ids("1")]
    torch.testing.assert_close(restricted.logits, full.logits[:, ids])
    torch.testing.assert_close(restricted.probs.sum(dim=1), torch.ones(3))
    by_id = llm.next_token_logits(lm.model, lm.tokenizer, PROMPTS, answers=ids)
    torch.testing.assert_close(by_id.logits, restricted.logits)
    with pytest.raises(UsageError, match="share first tokens"):
        llm.answer_token_ids(lm.tokenizer, ["0", "0"])


def test_embeddings_match_direct_forward_and_either_padding_side(lm):
    for layer in (-1, 0, 1):
        for mode in ("mean", "max", "first", "last_non_padding", "median"):
            left = llm.embeddings(lm.model, lm.tokenizer, PROMPTS, layer=layer, pooling=mode, batch_size=3)
            right = llm.embeddings(lm.model, lm.tokenizer, PROMPTS, layer=layer, pooling=mode, batch_size=3,
                                   padding_side="right")
            torch.testing.assert_close(left, right, atol=1e-5, rtol=0)
            for i, p in enumerate(PROMPTS):
                hidden = direct_forward(lm, p).hidden_states[layer][0]
                expected = {"mean": hidden.mean(0), "max": hidden.max(0).values, "first": hidden[0],
                            "last_non_padding": hidden[-1], "median": hidden.median(0).values}[mode]
                torch.testing.assert_close(left[i], expected, atol=1e-5, rtol=0)
    assert left.shape == (3, 64)


def test_generation_greedy_batched_equals_single(lm):
    batched = llm.generate(lm.model, lm.tokenizer, PROMPTS, max_new_tokens=6, batch_size=3)
    single = [llm.generate(lm.model, lm.tokenizer, [p], max_new_tokens=6)[0] for p in PROMPTS]
    assert batched == single and all(isinstance(g, str) for g in batched)


def test_pad_token_reuses_eos_without_resizing(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = None
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    size = model.get_input_embeddings().weight.shape[0]
    note = llm.ensure_pad_token(tok, model)
    assert tok.pad_token == tok.eos_token and "eos" in note
    assert model.get_input_embeddings().weight.shape[0] == size


def test_prompts_come_from_the_shared_builder(lm):
    s = llm.PromptSettings(system="S", template="Q: {input}\nA:", preprompt=">> ")
    msgs = llm.row_messages({"input": "x", "output": "y"}, s)
    expected = build_messages("x", template="Q: {input}\nA:", system="S")
    expected[-1]["content"] = ">> " + expected[-1]["content"]
    assert msgs == expected
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert llm.row_messages(chat, llm.PromptSettings(system="S")) == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "hi"}]
    plain = llm.prompt_texts(lm.tokenizer, [{"input": "x"}], llm.PromptSettings(chat_template=False, system="S"))
    assert plain == ["S\n\nx"]
    templated = llm.prompt_texts(lm.tokenizer, [{"input": "x"}])
    assert templated == ["<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """Two PEFT adapters on the tiny model: fresh (LoRA B = 0) and random (LoRA B != 0)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = {}
    for name, init in (("zero", True), ("random", False)):
        torch.manual_seed(1)
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=init)
        peft_model = get_peft_model(base, cfg)
        d = tmp_path_factory.mktemp(f"adapter-{name}")
        peft_model.save_pretrained(str(d))
        assert json.loads((d / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
        out[name] = d
    return out


def test_adapter_dir_loads_onto_its_base(adapters, tiny_model_dir, lm):
    tuned = llm.load_model(adapters["random"], device="cpu")
    assert tuned.base_dir == str(tiny_model_dir) and tuned.adapter_dir == str(adapters["random"])
    a = llm.next_token_logits(tuned.model, tuned.tokenizer, PROMPTS).logits
    b = llm.next_token_logits(lm.model, lm.tokenizer, PROMPTS).logits
    assert (a - b).abs().max() > 1e-4


def test_check_finetuned_identical_for_base_vs_itself(tiny_model_dir):
    cmp = llm.check_finetuned(tiny_model_dir, tiny_model_dir, prompts=PROMPTS[:2], max_new_tokens=4, device="cpu")
    assert cmp.verdict == "identical" and cmp.kind == "full"
    assert cmp.summary()["tensors_compared"] == 21 and cmp.summary()["max_abs_diff"] == 0.0
    assert all(o.logits_max_abs == 0.0 and o.same_generation for o in cmp.outputs)


def test_check_finetuned_differs_for_nonzero_lora_b(adapters):
    cmp = llm.check_finetuned(adapters["random"], prompts=PROMPTS[:2], max_new_tokens=4, device="cpu")
    assert cmp.verdict == "differs" and cmp.kind == "adapter" and cmp.weights_differ and cmp.outputs_differ
    assert all(t.status == "lora_b_nonzero" and t.norm > 0 for t in cmp.tensors)
    assert len(cmp.tensors) == 4  # q_proj and v_proj in 2 layers


def test_check_finetuned_zero_lora_b_is_identical(adapters):
    cmp = llm.check_finetuned(adapters["zero"], prompts=PROMPTS[:1], max_new_tokens=4, device="cpu")
    assert cmp.verdict == "identical" and any("zero" in n for n in cmp.notes)


def test_check_finetuned_merged_model_differs(adapters, tmp_path):
    merged = llm.load_model(adapters["random"], device="cpu", merge=True)
    merged.model.save_pretrained(str(tmp_path / "merged"))
    merged.tokenizer.save_pretrained(str(tmp_path / "merged"))
    cmp = llm.check_finetuned(tmp_path / "merged", merged.base_dir, outputs=False)
    changed = {t.name for t in cmp.tensors if t.differs}
    assert cmp.verdict == "differs" and len(changed) == 4
    assert all(("q_proj" in n or "v_proj" in n) for n in changed)


# ---- command line ---------------------------------------------------------------------------------

def _run(args):
    from cruijff.cli import cli

    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture()
def data_file(tmp_path):
    rows = [{"input": p, "output": str(i % 2)} for i, p in enumerate(PROMPTS)]
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"train": rows[:1], "test": rows}))
    return path


def test_cli_embed_writes_ids_values_and_settings(tiny_model_dir, data_file, tmp_path, lm):
    out = tmp_path / "emb.h5"
    _run(["embed", str(data_file), "--model", str(tiny_model_dir), "--out", str(out), "--layer", "-2",
          "--pooling", "last_non_padding", "--batch-size", "2", "--template", "T: {input}", "--system", "S",
          "--device", "cpu"])
    stored = llm.load_tensors(out)
    assert stored.ids == ["0", "1", "2"] and stored["embeddings"].shape == (3, 64)
    assert stored.attrs["layer"] == -2
    assert stored.attrs["pooling"] == "last_non_padding" and stored.attrs["template"] == "T: {input}"
    texts = llm.prompt_texts(lm.tokenizer, [{"input": p} for p in PROMPTS],
                             llm.PromptSettings(system="S", template="T: {input}"))
    expected = llm.embeddings(lm.model, lm.tokenizer, texts, layer=-2, pooling="last_non_padding")
    torch.testing.assert_close(torch.from_numpy(stored["embeddings"]), expected)


def test_cli_logits_with_answers(tiny_model_dir, data_file, tmp_path):
    out = tmp_path / "logits.h5"
    _run(["logits", str(data_file), "--model", str(tiny_model_dir), "--out", str(out), "--answers", "0,1",
          "--no-chat-template", "--device", "cpu"])
    stored = llm.load_tensors(out)
    assert stored["logits"].shape == (3, 2) and stored["probs"].shape == (3, 2)
    assert stored.attrs["answers"] == ["0", "1"] and stored.attrs["chat_template"] is False


def test_cli_check_finetuned_json(adapters, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello twin\nthe river\n")
    result = _run(["check-finetuned", str(adapters["random"]), "--prompts", str(prompts), "--json",
                   "--max-new-tokens", "3", "--expect", "differs", "--device", "cpu"])
    report = json.loads(result.stdout)
    assert report["verdict"] == "differs" and len(report["outputs"]) == 2


def test_cli_errors_are_one_line(tiny_model_dir, data_file, tmp_path, capsys):
    from cruijff.cli import main

    with pytest.raises(SystemExit) as e:
        main(["logits", str(data_file), "--model", str(tiny_model_dir), "--out", str(tmp_path / "x.h5"),
              "--split", "nope", "--device", "cpu"])
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert "split" in err and "Traceback" not in err


def test_cli_chat_rows_keep_their_ids_and_adapter_is_recorded(adapters, tiny_model_dir, tmp_path):
    chat = tmp_path / "chat"
    chat.mkdir()
    rows = [{"id": f"c{i}", "messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "1"}]}
            for i, p in enumerate(PROMPTS)]
    (chat / "test.json").write_text(json.dumps(rows))
    out = tmp_path / "e.h5"
    _run(["embed", str(chat), "--model", str(adapters["random"]), "--out", str(out), "--pooling", "median",
          "--device", "cpu"])
    stored = llm.load_tensors(out)
    assert stored.ids == ["c0", "c1", "c2"] and stored.attrs["format"] == "chat_json"
    assert stored.attrs["adapter"] == str(adapters["random"]) and stored.attrs["model"] == str(tiny_model_dir)


def test_cli_embed_and_logits_answer_json(tiny_model_dir, data_file, tmp_path):
    """One option, one meaning: --json on embed and logits too (issue 23, item 11)."""
    for command, extra in (("embed", []), ("logits", ["--answers", "0,1"])):
        out = tmp_path / f"{command}.h5"
        result = _run([command, str(data_file), "--model", str(tiny_model_dir), "--out", str(out), "--device", "cpu",
                       "--json", *extra])
        answer = json.loads(result.stdout)
        assert answer["kind"] == f"cruijff.{command}" and answer["ok"] and answer["out"] == str(out)
        stored = llm.load_tensors(out)
        name = "embeddings" if command == "embed" else "logits"
        assert answer["rows"] == 3 and answer["arrays"][name] == list(stored[name].shape)
