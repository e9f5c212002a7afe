"""Token-exact parity: the ids trained as the prompt are the ids inspect-ai feeds the model.

For every shipped experiment (experiments/*.yaml), its datasets (with its prompt, and with each of
its prompt variants) are generated offline with
cruijff's generators; for every row of every split, the training side is the real dataset
component (`prompted_dataset`, rendered by cruijff.compiler.render.torchtune, with the rendered tokenizer
component) and the evaluation side is inspect-ai's own hf provider, loaded with the rendered
model_config.yaml, fed the real task's samples (cruijff.tasks), with the model's `generate`
intercepted to capture the input_ids it receives. Tokenizers: SmolLM2 (ChatML, default system
turn), the tiny model (ChatML), a Llama-3-style one (BOS in the template and in the tokenizer's
post-processor, a dated system preamble) and one without a chat template (inspect's fallback).
The same datasets in `prompt.style: text_completion` (base models) are compared the same way, and
their evaluated prompts must be the plain templated text: the model's chat template never applied.

Two tiers (docs/dev/testing.md): by default each split is checked on a seeded sample of rows plus
its edge rows (the longest and shortest prompt, the first non-ASCII one, the first without a system
turn); the `every-row` cases (marked slow) check every row of every split.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import Counter
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.inspect

EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
SPLITS = ("train", "validation", "test")
BATCH = 32  # requests per hf batch; a job sends whole batches (see evaluated_prompts)


@pytest.fixture(params=[pytest.param(False, id="sampled-rows"),
                        pytest.param(True, id="every-row", marks=pytest.mark.slow)])
def every_row(request) -> bool:
    """Default tier: sampled and edge rows of every split; slow tier: every row."""
    return request.param


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
            base = {"template": None, "system": None, **m.get("prompt", {})}
            found.append((f"{manifest.stem}:{name}", {"path": str(path), "format": ds["format"], "splits": splits}, base))
            for variant, keys in (m.get("prompts") or {}).items():  # each prompt variant (grid.prompt)
                if {**base, **keys} != base:
                    found.append((f"{manifest.stem}:{name}@{variant}",
                                  {"path": str(path), "format": ds["format"], "splits": splits}, {**base, **keys}))
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


HP = {"max_seq_len": None, "train_on_input": False, "packed": False}


@functools.lru_cache(maxsize=None)
def trained_tokenizer(model_dir: Path):
    """The rendered tokenizer component, built once per model (loading a tokenizer is the slow part)."""
    from omegaconf import OmegaConf
    from torchtune import config

    from cruijff.compiler.render.torchtune import tokenizer_component

    model = {"family": "custom", "path": str(model_dir), "builder": {}}
    return config.instantiate(OmegaConf.create(tokenizer_component(model, HP)))


def trained_prompts(model_dir: Path, dataset: dict, prompt: dict, split: str,
                    rows: list[int]) -> list[tuple[int, ...]]:
    """The masked prefix of each chosen training row, built from the rendered finetune.yaml parts."""
    from omegaconf import OmegaConf
    from torchtune import config

    from cruijff.compiler.render.torchtune import dataset_component

    ds = config.instantiate(OmegaConf.create(dataset_component(dataset, split, prompt, HP)), trained_tokenizer(model_dir))
    prompts = []
    for i in rows:
        s = ds[i]
        first = next(j for j, label in enumerate(s["labels"]) if int(label) != -100)
        prompts.append(tuple(int(t) for t in s["tokens"][:first]))
    return prompts


def chosen_rows(samples: list, every_row: bool) -> list[int]:
    """Every row, or one batch of rows: the edge rows (the longest and the shortest prompt, the
    first with a non-ASCII character, the first without a system turn) and a seeded sample."""
    if every_row:
        return list(range(len(samples)))
    texts = ["\n".join(m.text for m in s.input) for s in samples]
    rows = {max(range(len(texts)), key=lambda i: len(texts[i])), min(range(len(texts)), key=lambda i: len(texts[i])),
            next((i for i, t in enumerate(texts) if not t.isascii()), 0),
            next((i for i, s in enumerate(samples) if all(m.role != "system" for m in s.input)), 0)}
    others = [i for i in range(len(samples)) if i not in rows]
    return sorted(rows | set(random.Random(len(samples)).sample(others, min(BATCH - len(rows), len(others)))))


def whole_batches(rows: list[int]) -> list[int]:
    """The rows, repeated from the first until their count is a multiple of BATCH."""
    return rows + [rows[i % len(rows)] for i in range(-len(rows) % BATCH)]


@contextmanager
def awaited_batches():
    """inspect's hf provider, without its polling: each request's coroutine polls its future once a
    second with a blocking `future.result(timeout=0.01)`, so N pending requests stall the event
    loop N x 10 ms a second and a split of 2,000 rows takes minutes of sleep. Here the same future
    is awaited instead; the queue, the batching (`_drain_batches`) and the batch's tokenization and
    `generate` call (`_generate_batch`) stay inspect's own, so the ids captured are the ids it feeds."""
    from threading import Thread

    from inspect_ai.model._providers import hf

    async def batched_generate(input):
        if hf.batch_thread is None:
            hf.batch_thread = Thread(target=hf.process_batches, daemon=True)
            hf.batch_thread.start()
        future = Future()
        hf.batch_queue.put(hf._QueueItem(input=input, future=future, key=hf._batch_key(input)))
        return await asyncio.wrap_future(future)

    original, hf.batched_generate = hf.batched_generate, batched_generate
    try:
        yield
    finally:
        hf.batched_generate = original


def evaluated_prompts(model_dir: Path, jobs: list[tuple[dict, dict, str]], style: str = "chat",
                      every_row: bool = False) -> list[tuple[list[int], list[tuple[int, ...]]]]:
    """Per (dataset, prompt, split): the rows chosen and the input_ids inspect's hf provider passes
    to model.generate for them. A split's requests go out together, in whole batches: max_connections
    is both inspect's concurrency limit and the hf provider's batch size, and a batch that is not
    full waits for 2 seconds of quiet, so each job's rows are padded to a multiple of BATCH by
    repeating its first rows (the trained side gets the same repeats)."""
    import torch
    from inspect_ai.model import GenerateConfig, get_model

    from cruijff.compiler.render.inspect import model_config, task_config
    from cruijff.tasks import load_samples

    model = get_model("hf/local", config=GenerateConfig(max_connections=BATCH), memoize=False,
                      **model_config(model_dir=str(model_dir), gpus=0, provider="hf", style=style))
    eos = model.api.tokenizer.eos_token_id
    seen: list[tuple[int, ...]] = []

    def generate(input_ids, attention_mask, **kwargs):
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            seen.append(tuple(t for t, keep in zip(ids, mask) if keep))  # left padding dropped
        new = torch.full((input_ids.shape[0], 1), eos, dtype=input_ids.dtype)
        return SimpleNamespace(sequences=torch.cat([input_ids, new], 1), logits=None, hidden_states=None)

    model.api.model.generate = generate

    async def run(samples):
        await asyncio.gather(*(model.generate(s.input) for s in samples))

    results = []
    with awaited_batches():
        for dataset, prompt, split in jobs:  # one job at a time, so each captured id list belongs to its job
            args = task_config(dataset={**dataset, "splits": {**dataset["splits"], "test": split}},
                               prompt=prompt, task={})
            samples = load_samples(args["data"], format=args["format"], split=args["split"],
                                   template=args["template"], system=args["system"])
            rows = whole_batches(chosen_rows(samples, every_row))
            seen.clear()
            asyncio.run(run([samples[i] for i in rows]))
            assert len(seen) == len(rows)
            results.append((rows, list(seen)))
    return results


def assert_parity(model_dir: Path, datasets, style: str = "chat",
                  every_row: bool = False) -> list[tuple[list[int], list[tuple[int, ...]]]]:
    """Every trained prompt of the chosen rows is an evaluated prompt; returns, per (dataset,
    split), the rows and their evaluated prompts."""
    jobs = [(dataset, prompt, split) for _, dataset, prompt in datasets for split in SPLITS]
    names = [f"{name} [{split}]" for name, _, _ in datasets for split in SPLITS]
    evaluated = evaluated_prompts(model_dir, jobs, style, every_row)
    checked = 0
    for where, (dataset, prompt, split), (rows, evald) in zip(names, jobs, evaluated):
        train = trained_prompts(model_dir, dataset, prompt, split, rows)
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
    assert checked >= (1000 if every_row else len(jobs) * BATCH)
    return evaluated


def test_parity_smollm2_chatml(smollm2_model_dir, shipped_datasets, every_row):
    assert_parity(smollm2_model_dir, shipped_datasets, every_row=every_row)


def test_parity_tiny_model(tiny_model_dir, shipped_datasets, every_row):
    assert_parity(tiny_model_dir, shipped_datasets, every_row=every_row)


def test_parity_llama3_dated_system_and_bos(llama3_dir, shipped_datasets, every_row):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(llama3_dir))
    text = tok.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                                   add_generation_prompt=True, tokenize=False)
    assert "Today Date:" in text and text.startswith("<|begin_of_text|>")
    assert tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2  # the hazard the eval config removes
    assert_parity(llama3_dir, shipped_datasets, every_row=every_row)


def test_parity_without_a_chat_template(plain_dir, shipped_datasets, every_row):
    assert_parity(plain_dir, shipped_datasets, every_row=every_row)


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


def assert_plain_text(model_dir: Path, datasets, evaluated) -> None:
    """Evaluated prompts are the tokenizer's own encoding of the plain text (its BOS, where it adds
    one, and nothing of a chat template); the text comes from the one place that decides it."""
    from transformers import AutoTokenizer

    from cruijff.prompting import completion_prompt
    from cruijff.tasks._dataset import read_split

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    jobs = [(dataset, prompt, split) for _, dataset, prompt in datasets for split in SPLITS]
    for (dataset, prompt, split), (rows, evald) in zip(jobs, evaluated):
        records = read_split(dataset["path"], dataset["format"], dataset["splits"][split])
        texts = [completion_prompt(records[i]["input"], template=prompt["template"]) for i in rows]
        assert Counter(evald) == Counter(tuple(tok(text)["input_ids"]) for text in texts)


@pytest.mark.parametrize("which", ["tiny", "llama3", "plain"])
def test_parity_text_completion(which, tiny_model_dir, llama3_dir, plain_dir, shipped_datasets, every_row):
    """A tokenizer with a chat template (tiny: ChatML; llama3: BOS in template and post-processor)
    and one without: training and evaluation both see the plain text, token for token."""
    from transformers import AutoTokenizer

    model_dir = {"tiny": tiny_model_dir, "llama3": llama3_dir, "plain": plain_dir}[which]
    datasets = text_completion(shipped_datasets)
    evaluated = assert_parity(model_dir, datasets, style="text_completion", every_row=every_row)
    assert_plain_text(model_dir, datasets, evaluated)
    evaluated = [ids for _, prompts in evaluated for ids in prompts]
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
