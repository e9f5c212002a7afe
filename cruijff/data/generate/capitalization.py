"""The capitalization task: input a lower-case English word, output it capitalized ("house" -> "House").

Words come from the `english-words` package (its `web2` list, lower-cased, letters only), which
ships the list inside the wheel, so generation needs no network. The candidates are sorted before
the seeded draw, so the same seed gives the same words whatever the set's iteration order.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from cruijff.data.convert import parse_split, split_rows, write_chat_json, write_instruct_json
from cruijff.data.formats import DataFormatError, DatasetInfo

WORD_LIST = "web2"


def english_words(letters: int) -> list[str]:
    """Sorted lower-case words of exactly `letters` letters."""
    try:
        from english_words import get_english_words_set
    except ImportError:
        raise DataFormatError("the capitalization generator needs the english-words package",
                              hint="pip install 'cruijff[kit]' (or english-words)") from None
    words = get_english_words_set([WORD_LIST], alpha=True, lower=True)
    return sorted(w for w in words if len(w) == letters and w.isascii() and w.isalpha())


def capitalize(word: str) -> str:
    return word[:1].upper() + word[1:]


def capitalization_rows(*, letters: int = 5, count: int = 1000, seed: int = 0) -> list[dict]:
    if letters < 1:
        raise DataFormatError(f"capitalization: letters must be at least 1, got {letters}")
    if count < 1:
        raise DataFormatError(f"capitalization: count must be at least 1, got {count}")
    words = english_words(letters)
    if count > len(words):
        raise DataFormatError(f"capitalization: asked for {count} words of {letters} letters, "
                              f"but the word list has only {len(words)}",
                              hint="lower --count or change --letters")
    chosen = random.Random(seed).sample(words, count)
    return [{"input": w, "output": capitalize(w)} for w in chosen]


def generate_capitalization(out: str | Path, *, letters: int = 5, count: int = 1000,
                            split: str | Sequence[int] = "80,10,10", format: str = "instruct_json",
                            seed: int = 0, overwrite: bool = True) -> DatasetInfo:
    """Write the task as instruct_json (OUT is a .json file) or chat_json (OUT is a folder)."""
    pct = parse_split(split)
    if format not in ("instruct_json", "chat_json"):
        raise DataFormatError(f"capitalization: format {format!r} is not instruct_json or chat_json")
    rows = capitalization_rows(letters=letters, count=count, seed=seed)
    # The draw is already random; the split shuffle uses its own stream of the same seed.
    splits = split_rows(rows, pct, seed + 1)
    if format == "instruct_json":
        return write_instruct_json(out, splits, overwrite=overwrite)
    from cruijff.data.convert import instruct_to_chat_rows

    return write_chat_json(out, {s: instruct_to_chat_rows(r) for s, r in splits.items()},
                           overwrite=overwrite)
