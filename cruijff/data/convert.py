"""Converters between dataset formats, and the writers and splitters they share with the generators.

Every writer produces byte-identical output for identical rows (stable key order, fixed JSON
layout), so a seeded generator is reproducible to the byte. Outputs are written to a temporary
sibling and moved into place, so a failed run never leaves half a dataset behind.

Conversions go through rows: read every split (cruijff.data.formats), reshape the rows for the
target's kind, write. Row reshaping:

- instruct -> chat: `cruijff.prompting.build_messages(input, template, system, output)`; a row's
  own `system` field wins over the converter's `system` argument.
- chat -> instruct: output = the last assistant turn, input = the last user turn before it, and the
  first system turn (if any) is kept in a `system` field, so instruct -> chat -> instruct is exact.
  Earlier turns of multi-turn conversations are dropped (counted in the result).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from cruijff.data.formats import (
    CHAT,
    INSTRUCT,
    FORMATS,
    SPLITS,
    TEXT,
    DataFormatError,
    DatasetInfo,
    detect_format,
    inspect_dataset,
    read_dataset,
)

TARGETS = ("instruct_json", "chat_json", "parquet")
SOURCES = (*FORMATS, "csv")  # csv: a source only (cruijff data convert), not a dataset format
DEFAULT_SPLIT = (80, 10, 10)


@dataclass(frozen=True)
class Conversion:
    """What a conversion wrote, and what it had to leave out."""

    info: DatasetInfo
    dropped_turns: int = 0  # chat -> instruct: earlier turns of multi-turn conversations


# ---------------------------------------------------------------------------------------------
# splitting


def parse_split(spec: str | Sequence[int]) -> tuple[int, ...]:
    """'80,10,10' (or [80, 10, 10]) -> percentages of train, validation, test; 1 to 3 summing to 100."""
    if isinstance(spec, str):
        parts = [s.strip() for s in spec.replace("/", ",").split(",") if s.strip()]
        try:
            values = tuple(int(s) for s in parts)
        except ValueError:
            raise DataFormatError(f"split {spec!r}: percentages must be whole numbers",
                                  hint="e.g. 80,10,10 for train, validation, test") from None
    else:
        values = tuple(spec)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise DataFormatError(f"split {list(values)}: percentages must be whole numbers")
    if not 1 <= len(values) <= len(SPLITS):
        raise DataFormatError(f"split {spec!r}: give 1 to 3 percentages (train, validation, test)")
    if any(v < 0 for v in values) or sum(values) != 100:
        raise DataFormatError(f"split {spec!r}: percentages must be >= 0 and sum to 100",
                              hint="e.g. 80,10,10")
    return values


def split_sizes(n: int, percentages: Sequence[int]) -> dict[str, int]:
    """Rows per split for n rows; splits with 0% are left out. Cumulative rounding: sums to n."""
    sizes: dict[str, int] = {}
    cum, start = 0, 0
    for name, pct in zip(SPLITS, percentages):
        cum += pct
        end = (n * cum + 50) // 100  # round half up, in integers
        if pct:
            sizes[name] = end - start
        start = end
    return sizes


def split_rows(rows: Sequence[Any], percentages: Sequence[int], seed: int) -> dict[str, list]:
    """Shuffle with the seed (random.Random: stable across Python versions), then cut by percentage."""
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    out, start = {}, 0
    for name, size in split_sizes(len(shuffled), percentages).items():
        out[name] = shuffled[start:start + size]
        start += size
    return out


# ---------------------------------------------------------------------------------------------
# writers


def write_instruct_json(dst: str | Path, splits: dict[str, list[dict]], *, overwrite: bool = False) -> DatasetInfo:
    """One JSON file of splits; rows keep their keys, input and output first."""
    data = {s: [_instruct_order(r) for r in rows] for s, rows in splits.items()}
    with _publish(Path(dst), overwrite, is_dir=False) as tmp:
        _dump_json(tmp, data)
    return inspect_dataset(dst, "instruct_json")


def write_chat_json(dst: str | Path, splits: dict[str, list[dict]], *, overwrite: bool = False) -> DatasetInfo:
    with _publish(Path(dst), overwrite, is_dir=True) as tmp:
        for split, rows in splits.items():
            _dump_json(tmp / f"{split}.json", rows)
    return inspect_dataset(dst, "chat_json")


def write_parquet(dst: str | Path, splits: dict[str, list[dict]], *, overwrite: bool = False) -> DatasetInfo:
    """One `<split>.parquet` per split, all with one schema (the union of the rows' keys)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(k for rows in splits.values() for r in rows for k in r))
    table = {s: [{c: r.get(c) for c in columns} for r in rows] for s, rows in splits.items()}
    everything = [r for rows in table.values() for r in rows]
    schema = (pa.Table.from_pylist(everything).schema if everything
              else pa.schema([("input", pa.string()), ("output", pa.string())]))
    with _publish(Path(dst), overwrite, is_dir=True) as tmp:
        for split, rows in table.items():
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp / f"{split}.parquet")
    return inspect_dataset(dst, "parquet")


WRITERS = {"instruct_json": write_instruct_json, "chat_json": write_chat_json, "parquet": write_parquet}


def _instruct_order(row: dict) -> dict:
    return {"input": row["input"], "output": row["output"],
            **{k: v for k, v in row.items() if k not in ("input", "output")}}


def _dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


class _publish:
    """Write into a temporary sibling, then move it onto dst; refuse to clobber unless asked."""

    _DATA = {".json", ".jsonl", ".parquet"}

    def __init__(self, dst: Path, overwrite: bool, *, is_dir: bool):
        self.dst, self.overwrite, self.is_dir = dst.expanduser().absolute(), overwrite, is_dir

    def __enter__(self) -> Path:
        dst = self.dst
        if dst.exists():
            if not self.overwrite:
                raise DataFormatError(f"{dst} already exists", hint="remove it or pass --force")
            if dst.is_dir() != self.is_dir:
                raise DataFormatError(f"{dst} exists and is a {'folder' if dst.is_dir() else 'file'}; "
                                      f"expected a {'folder' if self.is_dir else 'file'}")
            if self.is_dir and any(f.is_dir() or f.suffix not in self._DATA for f in dst.iterdir()):
                raise DataFormatError(f"{dst} holds files other than dataset splits; not replacing it",
                                      hint="choose an empty or new output folder")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if self.is_dir:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
            os.close(fd)
            self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True) if self.is_dir else self.tmp.unlink(missing_ok=True)
            return
        if self.is_dir:
            os.chmod(self.tmp, 0o755)  # mkdtemp makes 0700
            if self.dst.exists():
                shutil.rmtree(self.dst)
            os.replace(self.tmp, self.dst)
        else:
            os.chmod(self.tmp, 0o644)  # mkstemp makes 0600
            os.replace(self.tmp, self.dst)


# ---------------------------------------------------------------------------------------------
# row reshaping


def instruct_to_chat_rows(rows: Iterable[dict], *, template: str | None = None,
                          system: str | None = None) -> list[dict]:
    from cruijff.prompting import build_messages

    return [{"messages": build_messages(r["input"], template=template,
                                        system=r.get("system") or system, output=r["output"])}
            for r in rows]


def chat_to_instruct_rows(rows: Iterable[dict], *, where: str = "") -> tuple[list[dict], int]:
    """(instruct rows, number of dropped earlier turns)."""
    out, dropped = [], 0
    for i, row in enumerate(rows):
        messages = row["messages"]
        a = _last_index(messages, "assistant", len(messages))
        u = _last_index(messages, "user", a) if a is not None else None
        if a is None or u is None:
            raise DataFormatError(f"{where}row {i}: needs a user turn followed by an assistant turn",
                                  hint="chat -> instruct takes the last user and assistant turns")
        new = {"input": messages[u]["content"], "output": messages[a]["content"]}
        system = next((m["content"] for m in messages if m["role"] == "system"), None)
        if system is not None:
            new["system"] = system
        kept = 2 + (system is not None)
        dropped += len(messages) - kept
        out.append(new)
    return out, dropped


def _last_index(messages: list[dict], role: str, before: int) -> int | None:
    for j in range(before - 1, -1, -1):
        if messages[j]["role"] == role:
            return j
    return None


# ---------------------------------------------------------------------------------------------
# converters


def convert(src: str | Path, dst: str | Path, *, to: str, src_format: str | None = None,
            template: str | None = None, system: str | None = None,
            input_columns: Sequence[str] = ("input",), output_column: str = "output",
            split: str | Sequence[int] = DEFAULT_SPLIT, seed: int = 0,
            overwrite: bool = False) -> Conversion:
    """Convert any readable dataset (or a CSV) into instruct_json, chat_json or parquet."""
    if to not in TARGETS:
        raise DataFormatError(f"cannot convert to {to!r}", hint=f"targets: {', '.join(TARGETS)}")
    fmt = src_format or _source_format(src)
    if fmt not in SOURCES:
        raise DataFormatError(f"unknown source format {fmt!r}", hint=f"sources: {', '.join(SOURCES)}")
    if fmt == "csv":
        if to != "instruct_json":
            raise DataFormatError("CSV converts to instruct_json only",
                                  hint="convert to instruct_json first, then from there")
        return Conversion(csv_to_instruct(src, dst, input_columns=input_columns,
                                          output_column=output_column, split=split, seed=seed,
                                          overwrite=overwrite))
    info, splits = read_dataset(src, fmt)
    dropped = 0
    if to == "parquet":
        pass  # parquet holds any row shape unchanged
    elif to == "chat_json":
        if info.kind == CHAT:
            pass
        elif info.kind == INSTRUCT:
            splits = {s: instruct_to_chat_rows(r, template=template, system=system) for s, r in splits.items()}
        else:
            raise DataFormatError(f"{info.path}: {info.kind} rows cannot become chat rows")
    elif to == "instruct_json":
        if info.kind == CHAT:
            converted = {}
            for s, rows in splits.items():
                converted[s], n = chat_to_instruct_rows(rows, where=f"{info.path}: {s} ")
                dropped += n
            splits = converted
        elif info.kind == TEXT:
            raise DataFormatError(f"{info.path}: text rows have no input/output to convert")
    return Conversion(WRITERS[to](dst, splits, overwrite=overwrite), dropped)


def _source_format(src: str | Path) -> str:
    p = Path(src)
    if p.is_file() and p.suffix.lower() == ".csv":
        return "csv"
    return detect_format(p)


def json_to_parquet(src: str | Path, dst: str | Path, **kw) -> DatasetInfo:
    return convert(src, dst, to="parquet", src_format="instruct_json", **kw).info


def arrow_to_parquet(src: str | Path, dst: str | Path, **kw) -> DatasetInfo:
    return convert(src, dst, to="parquet", src_format="arrow", **kw).info


def instruct_to_chat(src: str | Path, dst: str | Path, *, template: str | None = None,
                     system: str | None = None, overwrite: bool = False) -> DatasetInfo:
    return convert(src, dst, to="chat_json", src_format="instruct_json", template=template,
                   system=system, overwrite=overwrite).info


def chat_to_instruct(src: str | Path, dst: str | Path, *, overwrite: bool = False) -> Conversion:
    return convert(src, dst, to="instruct_json", src_format="chat_json", overwrite=overwrite)


def csv_to_instruct(src: str | Path, dst: str | Path, *, input_columns: Sequence[str] = ("input",),
                    output_column: str = "output", split: str | Sequence[int] = DEFAULT_SPLIT,
                    seed: int = 0, overwrite: bool = False) -> DatasetInfo:
    """CSV rows -> instruct rows, shuffled with the seed and split by percentage.

    One input column is used as is; several become lines `column: value`, in the order given.
    """
    percentages = parse_split(split)
    rows = read_csv(src)
    header = list(rows[0]) if rows else _csv_header(src)
    input_columns = list(input_columns) or ["input"]
    missing = [c for c in [*input_columns, output_column] if c not in header]
    if missing:
        raise DataFormatError(f"{src}: no column {', '.join(map(repr, missing))} (columns: {', '.join(header)})",
                              hint="choose columns with --input-column and --output-column")
    examples = []
    for row in rows:
        if len(input_columns) == 1:
            text = row[input_columns[0]]
        else:
            text = "\n".join(f"{c}: {row[c]}" for c in input_columns)
        examples.append({"input": text, "output": row[output_column]})
    return write_instruct_json(dst, split_rows(examples, percentages, seed), overwrite=overwrite)


def read_csv(src: str | Path) -> list[dict[str, str]]:
    p = Path(src)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
    except FileNotFoundError:
        raise DataFormatError(f"CSV not found: {p}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataFormatError(f"{p}: not a readable CSV ({e})") from None
    for n, row in enumerate(rows, 2):
        if None in row or any(v is None for v in row.values()):
            raise DataFormatError(f"{p}:{n}: row has a different number of fields than the header")
    return rows


def _csv_header(src: str | Path) -> list[str]:
    with Path(src).open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])
