"""Token-exact parity: the ids trained as the prompt are the ids inspect-ai feeds the model.

For every shipped experiment (experiments/*.yaml), its datasets are generated offline with
cruijff's generators; for every row of every split, the training side is the real dataset
component (`prompted_dataset`, rendered by cruijff.compiler.render.torchtune, with the rendered tokenizer
component) and the evaluation side is inspect-ai's own hf provider, loaded with the rendered
model_config.yaml, fed the real task's samples (cruijff.tasks), with the model's `generate`
intercepted to capture the input_ids it receives. Tokenizers: SmolLM2 (ChatML, default system
turn), the tiny model (ChatML), a Llama-3-style one (BOS in the template and in the tokenizer's
post-processor, a dated system preamble) and one without a chat template (inspect's fallback).
The same datasets in `prompt.style: text_completion` (base models) are compared the same way, and
their evaluated prompts must be the plain templated text: the model's chat template never applied.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.inspect

EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def shipped_datasets(tmp_path_factory) -> list[tuple[str, dict, dict]]:
    """(experiment, dataset, prompt) for every dataset of every shipped experiment, generated here."""
    from ruamel.yaml import YAML

    from cruijff.cli import cli
    from cruijff.data.generate import cli_args, path_options

    out, found = tmp_path_factory.mktemp("data"), []
    for manifest in EXPERIMENTS:
        m = YAML(typ="safe").load(manifest.read_text())
        for name, ds in m["datasets"].items():
            gen = dict(ds["generate"])
            kind = gen.pop("kind")
            for key in path_options(kind, reads=True):  # relative to the manifest, as cruijff reads them
                if gen.get(key):
                    gen[key] = str(manifest.parent / gen[key])
            path = out / manifest.stem / Path(ds["path"]).name
            cli.main(args=["data", "generate", *cli_args(kind, path, gen)], standalone_mode=False)
            splits = {"train": "train", "validation": "validation", "test": "test", **ds.get("splits", {})}
            found.append((f"{manifest.stem}:{name}", {"path": str(path), "format": ds["format"], "splits": splits},
                          {"template": None, "system": None, **m.get("prompt", {})}))
    assert {e.split(":")[0] for e, _, _ in found} == {p.stem for p in EXPERIMENTS}
    return found


@pytest.fixture(scope="module")
def llama3_dir(tmp_path_factory) -> Path:
    from tests.chat_tokenizers import build_llama3_style

    return build_llama3_style(tmp_path_factory.mktemp("llama3-style"))


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory) -> Path:
    from tests.chat_tokenizers import build_llama3_style

    return build_llama3_style(tmp_path_factory.mktemp("no-template"), chat_template=False)


def trained_prompts(model_dir: Path, dataset: dict, prompt: dict, split: str) -> list[tuple[int, ...]]:
    """The masked prefix of every training sample, built from the rendered finetune.yaml parts."""
    from omegaconf import OmegaConf
    from torchtune import config

    from cruijff.compiler.render.torchtune import dataset_component, tokenizer_component

    hp = {"max_seq_len": None, "train_on_input": False, "packed": False}
    model = {"family": "custom", "path": str(model_dir), "builder": {}}
    tok = config.instantiate(OmegaConf.create(tokenizer_component(model, hp)))
    ds = config.instantiate(OmegaConf.create(dataset_component(dataset, split, prompt, hp)), tok)
    prompts = []
    for i in range(len(ds)):
        s = ds[i]
        first = next(j for j, label in enumerate(s["labels"]) if int(label) != -100)
        prompts.append(tuple(int(t) for t in s["tokens"][:first]))
    return prompts


def evaluated_prompts(model_dir: Path, jobs: list[tuple[dict, dict, str]],
                      style: str = "chat") -> list[list[tuple[int, ...]]]:
    """Per (dataset, prompt, split): the input_ids inspect's hf provider passes to model.generate."""
    import torch
    from inspect_ai.model import GenerateConfig, get_model

    from cruijff.compiler.render.inspect import model_config, task_config
    from cruijff.tasks import load_samples

    # max_connections only sizes inspect's batches (its batcher polls once a second per batch).
    model = get_model("hf/local", config=GenerateConfig(max_connections=4096), memoize=False,
                      **model_config(model_dir=str(model_dir), gpus=0, provider="hf", style=style))
    eos = model.api.tokenizer.eos_token_id
    seen: list[tuple[int, ...]] = []

    def generate(input_ids, attention_mask, **kwargs):
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            seen.append(tuple(t for t, keep in zip(ids, mask) if keep))  # left padding dropped
        new = torch.full((input_ids.shape[0], 1), eos, dtype=input_ids.dtype)
        return SimpleNamespace(sequences=torch.cat([input_ids, new], 1), logits=None, hidden_states=None)

    model.api.model.generate = generate
    per_job = []
    for dataset, prompt, split in jobs:
        args = task_config(dataset={**dataset, "splits": {**dataset["splits"], "test": split}}, prompt=prompt, task={})
        per_job.append(load_samples(args["data"], format=args["format"], split=args["split"],
                                    template=args["template"], system=args["system"]))

    async def run(samples):
        await asyncio.gather(*(model.generate(s.input) for s in samples))

    results = []
    for samples in per_job:  # one job at a time, so each captured id list belongs to its job
        seen.clear()
        asyncio.run(run(samples))
        assert len(seen) == len(samples)
        results.append(list(seen))
    return results


def assert_parity(model_dir: Path, datasets, style: str = "chat") -> list[tuple[int, ...]]:
    """Every trained prompt is an evaluated prompt; returns the evaluated prompts."""
    jobs = [(dataset, prompt, split) for _, dataset, prompt in datasets for split in SPLITS]
    names = [f"{name} [{split}]" for name, _, _ in datasets for split in SPLITS]
    checked, everything = 0, []
    for where, (dataset, prompt, split), evald in zip(names, jobs, evaluated_prompts(model_dir, jobs, style)):
        train = trained_prompts(model_dir, dataset, prompt, split)
        missing = Counter(train) - Counter(evald)
        if missing:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(str(model_dir))
            first = next(iter(missing))
            near = min(evald, key=lambda e: sum(a != b for a, b in zip(e, first)) + abs(len(e) - len(first)))
            pytest.fail(f"{where}: {sum(missing.values())} of {len(train)} trained prompts are not "
                        f"what inspect feeds the model.\ntrained:   {tok.convert_ids_to_tokens(list(first))}\n"
                        f"evaluated: {tok.convert_ids_to_tokens(list(near))}")
        checked += len(train)
        everything += evald
    assert checked > 1000
    return everything


def test_parity_smollm2_chatml(smollm2_model_dir, shipped_datasets):
    assert_parity(smollm2_model_dir, shipped_datasets)


def test_parity_tiny_model(tiny_model_dir, shipped_datasets):
    assert_parity(tiny_model_dir, shipped_datasets)


def test_parity_llama3_dated_system_and_bos(llama3_dir, shipped_datasets):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(llama3_dir))
    text = tok.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                                   add_generation_prompt=True, tokenize=False)
    assert "Today Date:" in text and text.startswith("<|begin_of_text|>")
    assert tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2  # the hazard the eval config removes
    assert_parity(llama3_dir, shipped_datasets)


def test_parity_without_a_chat_template(plain_dir, shipped_datasets):
    assert_parity(plain_dir, shipped_datasets)


def test_training_without_eval_call_args_would_differ(llama3_dir, shipped_datasets):
    """The test can fail: inspect's default tokenizer call (add_special_tokens) breaks parity."""
    from cruijff.compiler.render import inspect as render_inspect

    name, dataset, prompt = next(d for d in shipped_datasets if d[0].startswith("tiny:"))
    original = render_inspect.model_config

    def default_call(**kw):
        cfg = original(**kw)
        cfg.pop("tokenizer_call_args")
        return cfg

    render_inspect.model_config = default_call
    try:
        with pytest.raises(pytest.fail.Exception, match="not what inspect feeds"):
            assert_parity(llama3_dir, [(name, dataset, prompt)])
    finally:
        render_inspect.model_config = original


def text_completion(datasets) -> list[tuple[str, dict, dict]]:
    """The first instruct dataset of each shipped experiment (each experiment's template) as a
    base-model experiment: prompt.style text_completion, the system prompt removed (text_completion
    refuses one), the template kept."""
    firsts: dict[str, tuple[str, dict, dict]] = {}
    for name, dataset, prompt in datasets:
        if dataset["format"] != "chat_json":
            firsts.setdefault(name.split(":")[0], (name, dataset, {**prompt, "system": None, "style": "text_completion"}))
    return list(firsts.values())


def plain_texts(datasets) -> list[str]:
    """The prompt text of every row, from the one place that decides it."""
    from cruijff.prompting import completion_prompt
    from cruijff.tasks._dataset import read_split

    return [completion_prompt(r["input"], template=prompt["template"])
            for _, dataset, prompt in datasets for split in SPLITS
            for r in read_split(dataset["path"], dataset["format"], dataset["splits"][split])]


def assert_plain_text(model_dir: Path, datasets, evaluated) -> None:
    """Evaluated prompts are the tokenizer's own encoding of the plain text (its BOS, where it adds
    one, and nothing of a chat template)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    expected = Counter(tuple(tok(text)["input_ids"]) for text in plain_texts(datasets))
    assert Counter(evaluated) == expected


@pytest.mark.parametrize("which", ["tiny", "llama3", "plain"])
def test_parity_text_completion(which, tiny_model_dir, llama3_dir, plain_dir, shipped_datasets):
    """A tokenizer with a chat template (tiny: ChatML; llama3: BOS in template and post-processor)
    and one without: training and evaluation both see the plain text, token for token."""
    from transformers import AutoTokenizer

    model_dir = {"tiny": tiny_model_dir, "llama3": llama3_dir, "plain": plain_dir}[which]
    datasets = text_completion(shipped_datasets)
    evaluated = assert_parity(model_dir, datasets, style="text_completion")
    assert_plain_text(model_dir, datasets, evaluated)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    marks = {tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|start_header_id|>", "<|eot_id|>")}
    marks.discard(tok.unk_token_id)
    marks.discard(None)
    assert not any(marks & set(ids) for ids in evaluated)  # no chat template was applied
    if which == "llama3":
        assert all(ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id for ids in evaluated)


def test_text_completion_with_the_chat_call_would_differ(llama3_dir, shipped_datasets):
    """The test can fail: evaluating text_completion data with the model's chat template breaks parity."""
    datasets = text_completion([d for d in shipped_datasets if d[0].startswith("tiny:")])
    with pytest.raises(pytest.fail.Exception, match="not what inspect feeds"):
        assert_parity(llama3_dir, datasets, style="chat")
