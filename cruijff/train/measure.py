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

SHOWN_ROWS = 10


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
