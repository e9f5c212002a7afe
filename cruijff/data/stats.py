"""Token statistics of a dataset with a model's own tokenizer (`cruijff data stats`).

Each row becomes chat messages exactly as training builds them (cruijff.prompting.row_prompt, with the same
template and system message), then is tokenized with the model folder's Hugging Face tokenizer:
with its chat template when it has one (the tokens training sees, special tokens included), else
the messages' contents alone (said in the output). Reported per split: rows, prompt / answer / total
tokens (mean, percentiles, max) and how many rows exceed a max_seq_len (training truncates them).
Imports transformers: not for `plan`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from cruijff.data.formats import DataFormatError, read_dataset
from cruijff.train.bulk import PARALLEL_ROWS

PERCENTILES = (50, 90, 95, 99)


@dataclass
class SplitStats:
    split: str
    rows: int
    prompt: dict[str, float] = field(default_factory=dict)
    answer: dict[str, float] = field(default_factory=dict)
    total: dict[str, float] = field(default_factory=dict)
    over_max: int | None = None


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """Nearest-rank percentile (the smallest value with at least q% of the values at or below it)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def summarise(lengths: Sequence[int]) -> dict[str, float]:
    xs = sorted(lengths)
    if not xs:
        return {}
    out = {"min": float(xs[0]), "mean": sum(xs) / len(xs)}
    out.update({f"p{q}": percentile(xs, q) for q in PERCENTILES})
    out["max"] = float(xs[-1])
    out["sum"] = float(sum(xs))
    return out


def load_tokenizer(model_dir: str | Path):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise DataFormatError("data stats needs transformers", hint="pip install transformers") from None
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as e:  # transformers raises OSError, ValueError, ... for a folder without a tokenizer
        raise DataFormatError(f"{model_dir}: no Hugging Face tokenizer could be loaded ({type(e).__name__})",
                              hint="pass the model folder that holds tokenizer.json / tokenizer_config.json") from None


def _messages(row: dict[str, Any], template: str | None, system: str | None) -> tuple[list[dict], list[dict]]:
    """(prompt messages, answer messages) of a row, from the builder training uses
    (cruijff.prompting.row_prompt); a text row is all answer."""
    from cruijff.prompting import row_prompt

    prompt, answer = row_prompt(row, template=template, system=system)
    return prompt, [{"role": "assistant", "content": answer}]


def _counter(tokenizer):
    """count(prompt, answer) -> (prompt tokens, total tokens), and the method's name."""
    if getattr(tokenizer, "chat_template", None):
        def ids(messages, **kw) -> int:
            out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)
            return len(out["input_ids"])

        def count(prompt, answer):
            return (ids(prompt, add_generation_prompt=True) if prompt else 0), ids(prompt + answer)
        return count, "chat template"

    def count(prompt, answer):
        p = sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in prompt)
        a = sum(len(tokenizer(m["content"], add_special_tokens=False)["input_ids"]) for m in answer)
        return p, p + a
    return count, "message contents only (the tokenizer has no chat template)"


CHUNK = 256  # rows rendered per batched tokenizer call
CHECKED = 32  # first rows counted both ways: a difference counts the whole dataset row by row


def _batch_counter(tokenizer):
    """counts(list of (prompt, answer)) -> [(prompt tokens, total tokens)], with one tokenizer call
    for a chunk of texts: the same renders (`cruijff.train.bulk.ChatRenderer`: string joins where
    the template copies contents verbatim, else its own call) and the same tokenization
    (apply_chat_template(tokenize=True) tokenizes its render with add_special_tokens=False),
    counted by `bulk.counter`. None for a slow (Python) tokenizer."""
    from cruijff.train.bulk import ChatRenderer, counter

    count = counter(tokenizer, {"add_special_tokens": False})
    if count is None:
        return None

    def lengths(texts: list[str]) -> list[int]:
        return [n for n, _ in count(texts)]

    if getattr(tokenizer, "chat_template", None):
        render = ChatRenderer(lambda messages, add_generation_prompt: tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt), tokenizer.chat_template)

        def counts(pairs):
            prompts = [render(p, True) for p, _ in pairs if p]
            fulls = [render(p + a, False) for p, a in pairs]
            prompt_lengths = iter(lengths(prompts))
            return [(next(prompt_lengths) if p else 0, t) for (p, _), t in zip(pairs, lengths(fulls))]
        return counts

    def counts(pairs):
        sizes = iter(lengths([m["content"] for p, a in pairs for m in p + a]))
        out = []
        for p, a in pairs:
            n_p = sum(next(sizes) for _ in p)
            out.append((n_p, n_p + sum(next(sizes) for _ in a)))
        return out
    return counts


PARALLEL_FROM = PARALLEL_ROWS  # rows: from here the chunks are shared out over the cores


def _all_counts(rows, template, system, tokenizer, count, progress: Callable[[int], None] | None = None):
    """(prompt tokens, total tokens) of every row, a chunk of rows at a time where the tokenizer
    allows (checked against the per-row count on the first rows), the chunks of a big split shared
    out over the cores. progress(n): n more rows counted."""
    batch = _batch_counter(tokenizer)
    if batch is not None:
        first = [_messages(row, template, system) for row in rows[:CHECKED]]
        if batch(first) != [count(*pair) for pair in first]:
            batch = None
    if batch is None:
        for row in rows:
            yield count(*_messages(row, template, system))
            if progress is not None:
                progress(1)
        return
    from cruijff.cores import on_cores, workers

    starts = list(range(0, len(rows), CHUNK))
    min_chunks = PARALLEL_FROM // CHUNK
    processes = workers() if len(starts) >= min_chunks else 1
    here, shown = os.getpid(), 0

    def count_chunks(share: list[int]) -> list[list[tuple[int, int]]]:
        nonlocal shown
        out = []
        for start in share:
            out.append(batch([_messages(row, template, system) for row in rows[start:start + CHUNK]]))
            if progress is not None and os.getpid() == here:  # the bar, drawn by this process only:
                step = min(len(out[-1]) * processes, len(rows) - shown)  # the others keep about its pace
                shown += step
                progress(step)
        return out

    for counts in on_cores(count_chunks, starts, min_items=min_chunks) or count_chunks(starts):
        yield from counts
    if progress is not None and shown < len(rows):
        progress(len(rows) - shown)


def token_stats(path: str | Path, model_dir: str | Path, *, format: str | None = None,
                template: str | None = None, system: str | None = None,
                max_seq_len: int | None = None,
                progress: Callable[[int], None] | None = None) -> tuple[list[SplitStats], str]:
    """progress(n): n more rows counted (a bar for the person waiting: a big file takes seconds)."""
    info, splits = read_dataset(path, format)
    tokenizer = load_tokenizer(model_dir)
    count, method = _counter(tokenizer)
    out = []
    for split, rows in splits.items():
        prompts, answers, totals = [], [], []
        for p, t in _all_counts(rows, template, system, tokenizer, count, progress):
            prompts.append(p)
            totals.append(t)
            answers.append(t - p)
        s = SplitStats(split, len(rows), summarise(prompts), summarise(answers), summarise(totals))
        if max_seq_len:
            s.over_max = sum(t > max_seq_len for t in totals)
        out.append(s)
    return out, method
