"""Build an inspect Task from a dataset split, with the prompt built as in training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from inspect_ai import Task
from inspect_ai.dataset import MemoryDataset
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import Scorer
from inspect_ai.solver import generate

from cruijff.tasks._dataset import load_samples

DEFAULT_SEED = 0
DEFAULT_TOP_LOGPROBS = 20  # the most OpenAI-compatible servers (vLLM included) accept
ONE_BATCH_UP_TO = 64  # samples; a task with more sends inspect's default batches (32)


def generate_config(*, max_tokens: int, seed: int = DEFAULT_SEED, logprobs: bool = False,
                    top_logprobs: int = DEFAULT_TOP_LOGPROBS, samples: int | None = None) -> GenerateConfig:
    """Greedy decoding with a fixed seed: evaluation must be repeatable.

    temperature=0 is greedy on vLLM/OpenAI-style providers; the hf provider also needs the model
    arg `do_sample: false` (it samples by default), which cruijff writes into model_config.yaml.
    With the number of samples (at most ONE_BATCH_UP_TO), they all go out as one batch: the hf
    provider's batch size is max_connections, and it generates a batch that is not full only after
    2 seconds without a new request (bench/eval_wait.py: 40 samples on the tiny model waited 5.3 s
    of an 18 s evaluation with the default of 32, 0.6 s as one batch).
    """
    extra = {"logprobs": True, "top_logprobs": top_logprobs} if logprobs else {}
    if samples and samples <= ONE_BATCH_UP_TO:
        extra["max_connections"] = samples
    return GenerateConfig(temperature=0.0, max_tokens=max_tokens, seed=seed, **extra)


def instruct_task(data: str | Path, *, format: str = "instruct_json", split: str = "test",
                  template: str | None = None, system: str | None = None,
                  scorers: Scorer | Sequence[Scorer], max_tokens: int = 64,
                  limit: int | None = None, seed: int = DEFAULT_SEED, logprobs: bool = False,
                  top_logprobs: int = DEFAULT_TOP_LOGPROBS, name: str | None = None) -> Task:
    """A single-turn generate-then-score Task over one split.

    data is the dataset path (absolute, as the compiler writes it into task_config.yaml); template
    and system are the manifest's prompt, passed unchanged, the same values training used.
    """
    samples = load_samples(data, format=format, split=split, template=template, system=system, limit=limit)
    scorer_list = [scorers] if callable(scorers) else list(scorers)
    return Task(
        dataset=MemoryDataset(samples, name=Path(str(data)).stem),
        solver=generate(),
        scorer=scorer_list,
        config=generate_config(max_tokens=max_tokens, seed=seed, logprobs=logprobs,
                               top_logprobs=top_logprobs, samples=len(samples)),
        name=name,
        metadata={"data": str(data), "format": format, "split": split, "template": template,
                  "system": system},
    )
