"""Model organisms: sequences over an alphabet whose label follows a known rule, so the best possible
score is known exactly and a fine-tune can be measured against it.

A sequence is `length` symbols drawn uniformly from `alphabet` (each symbol's value is its position
in the alphabet: "0" -> 0, "1" -> 1, or "a" -> 0, "b" -> 1 ...), written with `separator` between
symbols. Rules:
- parity:   "1" if the sum of the values is odd, else "0" (for "01": an odd number of ones);
- majority: the most frequent symbol (ties: the earliest in the alphabet);
- first:    the first symbol;
- constant: always `constant` (a pipeline check: anything must learn it);
- coin:     "1" with probability p, from a hash of (seed, sequence): the same sequence always gets
            the same label, but the label carries no information about the symbols;
- weighted: "1" if sum_i w_i * value_i > threshold, else "0" (weights cycle over positions;
            threshold defaults to the expected sum at the in-distribution length).
Splits: train/validation/test (in distribution, `length` symbols) and test_ood (`ood_length`,
longer by default). The Bayes-optimal accuracy (expected, and realised on each split's labels) is
written to `<out>.meta.json`: 1 for the deterministic rules, max(p, 1 - p) for coin on sequences
the model has not memorised.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from pathlib import Path
from typing import Sequence

from cruijff.data.convert import parse_split, split_rows, split_sizes, write_instruct_json
from cruijff.data.formats import DataFormatError, DatasetInfo
from cruijff.data.generate.tabular import config_hash, write_metadata

RULES = ("parity", "majority", "first", "constant", "coin", "weighted")
OOD_SPLIT = "test_ood"


def parse_weights(text: str | Sequence[float]) -> list[float]:
    if isinstance(text, str):
        try:
            weights = [float(w) for w in text.replace(";", ",").split(",") if w.strip()]
        except ValueError:
            raise DataFormatError(f"organisms: weights {text!r} are not numbers", hint="e.g. 1,2,-1") from None
    else:
        weights = [float(w) for w in text]
    if not weights:
        raise DataFormatError("organisms: weights must list at least one number")
    return weights


def coin_value(sequence: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, sequence): the coin's draw for that sequence."""
    digest = hashlib.sha256(f"coin:{seed}:{sequence}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def default_threshold(alphabet: str, length: int, weights: Sequence[float]) -> float:
    """The expected weighted sum at this length (symbol values uniform over 0..len-1)."""
    mean = (len(alphabet) - 1) / 2
    return sum(weights[i % len(weights)] for i in range(length)) * mean


def label(symbols: Sequence[str], *, rule: str, alphabet: str, p: float = 0.7, constant: str = "1",
          weights: Sequence[float] = (1.0,), threshold: float = 0.0, seed: int = 0) -> str:
    values = [alphabet.index(s) for s in symbols]
    if rule == "parity":
        return str(sum(values) % 2)
    if rule == "majority":
        counts = Counter(symbols)
        best = max(counts.values())
        return next(a for a in alphabet if counts.get(a) == best)
    if rule == "first":
        return symbols[0]
    if rule == "constant":
        return constant
    if rule == "coin":
        return "1" if coin_value("".join(symbols), seed) < p else "0"
    if rule == "weighted":
        total = sum(weights[i % len(weights)] * v for i, v in enumerate(values))
        return "1" if total > threshold else "0"
    raise DataFormatError(f"organisms: unknown rule {rule!r}", hint=f"rules: {', '.join(RULES)}")


def bayes_label(rule: str, symbols: Sequence[str], p: float, **kw) -> str:
    """What the best possible predictor answers: the rule itself, or the likelier coin side."""
    if rule == "coin":
        return "1" if p >= 0.5 else "0"
    return label(symbols, rule=rule, p=p, **kw)


def expected_bayes_accuracy(rule: str, p: float) -> float:
    return max(p, 1 - p) if rule == "coin" else 1.0


def _check(rule: str, alphabet: str, length: int, ood_length: int, count: int, ood_count: int,
           p: float, constant: str) -> None:
    if rule not in RULES:
        raise DataFormatError(f"organisms: unknown rule {rule!r}", hint=f"rules: {', '.join(RULES)}")
    if len(alphabet) < 2 or len(set(alphabet)) != len(alphabet):
        raise DataFormatError(f"organisms: alphabet {alphabet!r} needs at least 2 distinct symbols",
                              hint="e.g. 01, 0123456789 or abcd")
    if length < 1 or ood_length < 1 or count < 1 or ood_count < 0:
        raise DataFormatError("organisms: length, ood_length and count must be at least 1, ood_count at least 0")
    if not 0 <= p <= 1:
        raise DataFormatError(f"organisms: p must be in [0, 1], got {p}")
    if rule == "constant" and not constant:
        raise DataFormatError("organisms: constant must not be empty")


def generate_organisms(out: str | Path, *, rule: str = "parity", alphabet: str = "01", length: int = 8,
                       ood_length: int | None = None, count: int = 1000, ood_count: int = 200,
                       p: float = 0.7, constant: str = "1", weights: str = "1",
                       threshold: float | None = None, separator: str = " ",
                       split: str | Sequence[int] = "80,10,10", seed: int = 0,
                       overwrite: bool = True) -> DatasetInfo:
    """Draw sequences, label them by the rule, write instruct_json with a test_ood split and the
    Bayes-optimal accuracy in `<out>.meta.json`."""
    pct = parse_split(split)
    ood_length = ood_length if ood_length is not None else 2 * length
    _check(rule, alphabet, length, ood_length, count, ood_count, p, constant)
    w = parse_weights(weights)
    thr = threshold if threshold is not None else default_threshold(alphabet, length, w)
    kw = dict(rule=rule, alphabet=alphabet, p=p, constant=constant, weights=w, threshold=thr, seed=seed)
    rng = random.Random(f"organisms:{seed}")

    rule_kw = {k: v for k, v in kw.items() if k != "rule"}

    def draw(n: int, size: int, where: str) -> list[dict]:
        rows = []
        for _ in range(n):
            symbols = [rng.choice(alphabet) for _ in range(size)]
            rows.append({"input": separator.join(symbols), "output": label(symbols, **kw),
                         "meta": {"length": size, "distribution": where}})
        return rows

    def bayes_hits(row: dict) -> bool:
        symbols = row["input"].split(separator) if separator else list(row["input"])
        return bayes_label(rule, symbols, **rule_kw) == row["output"]

    splits = split_rows(draw(count, length, "in"), pct, seed + 1)
    if ood_count:
        splits[OOD_SPLIT] = draw(ood_count, ood_length, "out")
    realised = {s: (sum(map(bayes_hits, rows)) / len(rows) if rows else None) for s, rows in splits.items()}
    config = {"generator": "organisms", "rule": rule, "alphabet": alphabet, "length": length,
              "ood_length": ood_length, "count": count, "ood_count": ood_count, "p": p, "constant": constant,
              "weights": w, "threshold": thr, "separator": separator, "split": list(pct), "seed": seed}
    meta = {"generator": "organisms", "config": config, "config_hash": config_hash(config),
            "bayes_optimal_accuracy": expected_bayes_accuracy(rule, p),
            "bayes_optimal_accuracy_by_split": realised,
            "rows": {s: len(r) for s, r in splits.items()}}
    info = write_instruct_json(out, splits, overwrite=overwrite)
    write_metadata(out, meta)
    return info


def planned_sizes(count: int, ood_count: int, pct: Sequence[int]) -> dict[str, int]:
    sizes = split_sizes(count, pct)
    if ood_count:
        sizes[OOD_SPLIT] = ood_count
    return sizes
