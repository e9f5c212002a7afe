"""`python -m cruijff.train.measure`: token lengths of the datasets runs will train on.

`cruijff plan` cannot import torch or transformers, so it runs this module in a subprocess
(cruijff.compiler.token_fit) and reads its JSON answer. The request names the exact `tokenizer:`
and `dataset:` components a run's finetune.yaml renders; they are built with torchtune's
`config.instantiate`, as the recipe builds them, and each row's answer tokens are counted with
the recipe's own `trainable_tokens`: the counts are those the recipe's setup check will see.

stdin:  {"requests": [{"key": K, "tokenizer": {component}, "datasets": {role: {component}}}]}
stdout: {"results": {K: {"splits": {role: {split, rows, empty, empty_rows, truncated, longest,
         max_seq_len}}} or {"error": message}}}
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from typing import Any

from cruijff.train.bulk import PARALLEL_ROWS

SHOWN_ROWS = 10
BATCHED = True  # tests set it False to compare with the per-row build


def _instantiate(component: dict[str, Any], *args: Any) -> Any:
    from omegaconf import OmegaConf
    from torchtune import config

    return config.instantiate(OmegaConf.create(component), *args)


def measure_split(tokenizer: Any, component: dict[str, Any]) -> dict[str, Any]:
    """Counts for one split: rows, rows left with no answer token, rows truncated, the longest row.

    Packing is left out: it packs rows that were truncated one by one (the recipes check those).
    Each row is tokenized once, without the length limit: a chat or completion sample cut at
    max_seq_len is the first max_seq_len tokens and labels of the whole one (chat_sample,
    completion_sample and the dataset all cut by prefix), so the cut sample is taken from it.
    Text rows cut at max_seq_len - 1 (torchtune's rule), so they are built both ways.
    Chat and completion rows are measured a chunk at a time (`_measure_batched`: the same texts,
    rendered and counted in bulk, cruijff.train.bulk), checked against the per-row build; the
    chunks of a big split are shared out over the cores (cruijff.cores).
    """
    from cruijff.train.datasets import _TextTransform
    from cruijff.train.tokenizer import CROSS_ENTROPY_IGNORE_IDX
    from cruijff.train.trainable import trainable_tokens, unpacked

    component = {**component, "packed": False}
    limit = tokenizer.max_seq_len
    whole = copy.copy(tokenizer)
    whole.max_seq_len = None
    full_rows = unpacked(_instantiate(component, whole))
    if limit is None or isinstance(getattr(full_rows, "_transform", None), _TextTransform):
        return _measure_both_ways(tokenizer, component, full_rows)
    if BATCHED:
        counts = _measure_batched(full_rows, limit, component)
        if counts is not None:
            return counts
    empty, truncated, longest = [], 0, 0
    for i in range(len(full_rows)):
        sample = full_rows[i]
        full = len(sample["tokens"])
        if trainable_tokens({"labels": sample["labels"][:limit]}, CROSS_ENTROPY_IGNORE_IDX) == 0:
            empty.append(i)
        truncated += full > limit
        longest = max(longest, full)
    return {"split": component["split"], "rows": len(full_rows), "empty": len(empty),
            "empty_rows": empty[:SHOWN_ROWS], "truncated": truncated, "longest": longest, "max_seq_len": limit}


CHUNK = 256  # rows rendered and tokenized per batched call (only their lengths are kept)
PARALLEL_FROM = PARALLEL_ROWS  # rows: from here the chunks are shared out over the cores
CHECKED = 32  # rows checked against the exact build: the first ones, and as many spread over the split


def _batched(full_rows: Any) -> Any:
    """(`lengths(indices)`: {row: (prompt tokens, all tokens)}, `tokens(indices)`: {row: (prompt
    tokens, the tokens)}) of the rows among `indices` that batched calls measure, or None when none can.

    Both render each row's prompt and whole chat as `chat_sample` does (the same template calls, or
    `cruijff.train.bulk.ChatRenderer`'s string joins where the template copies contents verbatim),
    or take `completion_sample`'s two texts. `tokens` encodes many rows in one call of the same Rust
    tokenizer with the same arguments (`bulk.encoder`); `lengths` counts them (`bulk.counter`:
    distinct pieces tokenized once, where the tokenizer allows). Chat rows with earlier assistant
    turns (unmasked by character offsets) and rows whose prompt is no prefix of the chat (an error)
    are left to the exact build, as are text rows and slow (Python) tokenizers.
    """
    from cruijff.prompting import EVAL_TOKENIZER_CALL_ARGS, TEXT_COMPLETION, tokenizer_call_args
    from cruijff.train.bulk import ChatRenderer, counter, encoder
    from cruijff.train.datasets import _ChatTransform, _CompletionTransform, _TokenizedRows

    transform = getattr(full_rows, "_transform", None)
    if not isinstance(full_rows, _TokenizedRows) or not isinstance(transform, (_ChatTransform, _CompletionTransform)):
        return None
    tok = transform._tok
    chat = isinstance(transform, _ChatTransform)
    if chat:
        prompt_args, answer_args = EVAL_TOKENIZER_CALL_ARGS, EVAL_TOKENIZER_CALL_ARGS
    else:
        prompt_args, answer_args = tokenizer_call_args(TEXT_COMPLETION), {"add_special_tokens": False}
    eos, cut = tok.eos_id, full_rows._max_seq_len
    encode_prompts, encode_answers = encoder(tok.hf, prompt_args), encoder(tok.hf, answer_args)
    count_prompts, count_answers = counter(tok.hf, prompt_args), counter(tok.hf, answer_args, eos)
    if None in (encode_prompts, encode_answers, count_prompts, count_answers):
        return None
    render = ChatRenderer(tok.render, tok.hf.chat_template) if chat else None

    def texts(indices) -> tuple[list[int], list[str], list[str]]:
        index, prompts, answers = [], [], []
        for i in indices:
            prompt, answer = transform._prompts(dict(full_rows._rows[i]))
            if chat:
                if any(m["role"] == "assistant" for m in prompt):
                    continue
                prompt_text = render(prompt, True)
                full_text = render([*prompt, {"role": "assistant", "content": answer}], False)
                if not full_text.startswith(prompt_text):
                    continue
                prompts.append(prompt_text)
                answers.append(full_text[len(prompt_text):])
            else:
                (user,) = prompt  # one user turn, the templated text (completion_sample's prompt)
                prompts.append(user["content"])
                answers.append(answer)
            index.append(i)
        return index, prompts, answers

    def lengths(indices) -> dict[int, tuple[int, int]]:
        index, prompts, answers = texts(indices)
        out = {}
        for i, (p, _), (a, has_eos) in zip(index, count_prompts(prompts), count_answers(answers)):
            a += eos is not None and (not chat or not has_eos)  # chat_sample's EOS, when the answer has none
            out[i] = (p, p + a if cut is None else min(cut, p + a))
        return out

    def tokens(indices) -> dict[int, tuple[int, list[int]]]:
        index, prompts, answers = texts(indices)
        out = {}
        for i, p, a in zip(index, encode_prompts(prompts), encode_answers(answers)):
            a = a.ids
            if eos is not None and (not chat or eos not in a):
                a.append(eos)
            out[i] = (len(p), [*p.ids, *a][:cut])
        return out

    return lengths, tokens


def _measure_batched(full_rows: Any, limit: int, component: dict[str, Any]) -> dict[str, Any] | None:
    """measure_split's counts from batched calls, in chunks; None when the rows checked against
    the exact per-row build (CHECKED first rows and CHECKED spread over the split) differ in any
    token or count, or nothing can be batched: then the exact build measures the whole split."""
    from cruijff.train.tokenizer import CROSS_ENTROPY_IGNORE_IDX
    from cruijff.train.trainable import trainable_tokens

    batched = _batched(full_rows)
    n = len(full_rows)
    if batched is None:
        return None
    lengths, tokens = batched
    checked = sorted(set(range(min(CHECKED, n))) | set(range(0, n, max(1, n // CHECKED))))
    sample, counted = tokens(checked), lengths(checked)
    if not sample or counted.keys() != sample.keys() or any(
            full_rows[i]["tokens"] != ids or counted[i] != (p, len(ids)) for i, (p, ids) in sample.items()):
        return None
    trained_from_start = bool(full_rows._transform._train_on_input)

    def measure_chunks(starts: list[int]) -> list[tuple[list[int], int, int]]:
        """(rows with no answer token, rows truncated, the longest row) of each chunk."""
        out = []
        for start in starts:
            chunk = range(start, min(n, start + CHUNK))
            fast = lengths(chunk)
            empty, truncated, longest = [], 0, 0
            for i in chunk:
                if i in fast:
                    p, full = fast[i]
                    # labels: the prompt's masked (unless trained on), then the answer; the loss
                    # sees positions 1.. of the first `limit` (trainable_tokens after the cut)
                    is_empty = max(1, 0 if trained_from_start else p) >= min(limit, full)
                else:
                    row = full_rows[i]
                    full = len(row["tokens"])
                    is_empty = trainable_tokens({"labels": row["labels"][:limit]}, CROSS_ENTROPY_IGNORE_IDX) == 0
                if is_empty:
                    empty.append(i)
                truncated += full > limit
                longest = max(longest, full)
            out.append((empty, truncated, longest))
        return out

    from cruijff.cores import on_cores

    starts = list(range(0, n, CHUNK))
    chunks = on_cores(measure_chunks, starts, min_items=PARALLEL_FROM // CHUNK) or measure_chunks(starts)
    empty = [i for rows, _, _ in chunks for i in rows]
    return {"split": component["split"], "rows": n, "empty": len(empty),
            "empty_rows": empty[:SHOWN_ROWS], "truncated": sum(t for _, t, _ in chunks),
            "longest": max((m for _, _, m in chunks), default=0), "max_seq_len": limit}


def _measure_both_ways(tokenizer: Any, component: dict[str, Any], full_rows: Any) -> dict[str, Any]:
    """Each row built with the limit as training builds it, and without it where it may be cut."""
    from cruijff.train.tokenizer import CROSS_ENTROPY_IGNORE_IDX
    from cruijff.train.trainable import trainable_tokens, unpacked

    rows = unpacked(_instantiate(component, tokenizer))
    limit = tokenizer.max_seq_len
    empty, truncated, longest = [], 0, 0
    for i in range(len(rows)):
        sample = rows[i]
        n = len(sample["tokens"])
        if trainable_tokens(sample, CROSS_ENTROPY_IGNORE_IDX) == 0:
            empty.append(i)
        full = len(full_rows[i]["tokens"]) if limit is not None and n >= limit - 1 else n
        truncated += full > n
        longest = max(longest, full)
    return {"split": component["split"], "rows": len(rows), "empty": len(empty), "empty_rows": empty[:SHOWN_ROWS],
            "truncated": truncated, "longest": longest, "max_seq_len": limit}


def measure(request: dict[str, Any]) -> dict[str, Any]:
    from cruijff.errors import CruijffError

    try:
        tokenizer = _instantiate(request["tokenizer"])
        return {"splits": {role: measure_split(tokenizer, component)
                           for role, component in request["datasets"].items()}}
    except CruijffError as e:
        return {"error": e.message + (f" ({e.hint})" if e.hint else "")}
    except Exception as e:  # a broken tokenizer or data file: say why, the plan goes on
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")}


def main() -> int:
    requests = json.load(sys.stdin)["requests"]
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):  # libraries that print must not spoil the JSON
        results = {r["key"]: measure(r) for r in requests}
    out.write(json.dumps({"results": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
