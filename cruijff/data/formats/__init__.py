"""Dataset formats: detect, inspect and read them, with one clear error per problem.

This is the only dataset reader: the plan-time check, training (cruijff.train.datasets) and
evaluation (cruijff.tasks) all read through `read_split`, so a dataset that plans also trains and
evaluates, and reads the same rows in both (issue 15). Each format is one `Format` record
(detection, inspection, reading) in its own module of this package, and REGISTRY is the one list of
them; FORMATS names them and MANIFEST_FORMATS, the ones a manifest may name, equals the schema's
enum (tests/unit/test_data_formats.py). What they share (the record, DatasetInfo, the layout
detection looks at, file helpers) is in base.

`inspect_dataset` runs at plan time inside the compiler, so this package imports only the stdlib at
the top; pyarrow is imported inside the parquet/arrow readers, and parquet row counts come from
file metadata, never from reading the data.

Formats (the manifest's `datasets.<name>.format`):

- instruct_json: one JSON file `{"train": [{"input": ..., "output": ...}], "validation": [...]}`
- chat_json:     a folder of `<split>.json`, each a list of `{"messages": [{"role", "content"}]}`
- parquet:       a folder of `<split>.parquet` (columns input/output, messages, or text)
- arrow:         a `datasets` save_to_disk folder (DatasetDict, or one Dataset = split "train")
- text:          a folder of `<split>.json` / `<split>.jsonl` rows `{"text": ...}`, or one `.txt`
                 file (split "train", one row per non-empty line)
"""

from __future__ import annotations

from pathlib import Path

from cruijff.data.formats import arrow, chat_json, instruct_json, parquet, text
from cruijff.data.formats.base import (CHAT, INSTRUCT, ROLES, SPLITS, TEXT, DataFormatError, DatasetInfo, Format,
                                       Layout)

__all__ = ["CHAT", "FORMATS", "INSTRUCT", "MANIFEST_FORMATS", "REGISTRY", "ROLES", "SPLITS", "TEXT", "DataFormatError",
           "DatasetInfo", "Format", "detect_format", "inspect_dataset", "read_dataset", "read_split"]

# The one list of formats, in this order (hints and `cruijff data` choices list them so).
REGISTRY: dict[str, Format] = {f.name: f for f in (
    instruct_json.FORMAT, chat_json.FORMAT, parquet.FORMAT, arrow.FORMAT, text.FORMAT)}
FORMATS = tuple(REGISTRY)
MANIFEST_FORMATS = tuple(name for name, f in REGISTRY.items() if f.in_manifest)


def detect_format(path: str | Path) -> str:
    """The format of a file or folder, from its layout alone (file names, and a json folder's first row)."""
    p = Path(path)
    if not p.exists():
        raise DataFormatError(f"dataset not found: {p}", hint="check the path")
    layout = Layout(p)
    for f in REGISTRY.values():
        if f.detect(layout):
            return f.name
    suffix = p.suffix.lower()  # only a file is left: every folder is one format or an error above
    if suffix == ".parquet":
        raise DataFormatError(
            f"{p}: a single parquet file is not a dataset",
            hint="put the splits in a folder as train.parquet, validation.parquet, ...",
        )
    if suffix == ".csv":
        raise DataFormatError(
            f"{p}: CSV is not a training format",
            hint="convert it: cruijff data convert SRC.csv DST.json --to instruct_json",
        )
    raise DataFormatError(f"{p}: unknown dataset file type {suffix or '(no suffix)'!r}",
                          hint=f"formats: {', '.join(FORMATS)}")


def _resolve(path: str | Path, format: str | None) -> tuple[Path, str]:
    """The dataset's absolute path and format (detected when not given); both must be real."""
    p = Path(path).expanduser().resolve()
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise DataFormatError(f"unknown dataset format {fmt!r}", hint=f"formats: {', '.join(FORMATS)}")
    if not p.exists():
        raise DataFormatError(f"dataset not found: {p}", hint="check the path")
    return p, fmt


def inspect_dataset(path: str | Path, format: str | None = None, *,
                    require_splits: tuple[str, ...] | list[str] = ()) -> DatasetInfo:
    """Check a dataset and describe it; `require_splits` names splits that must exist."""
    p, fmt = _resolve(path, format)
    info = REGISTRY[fmt].inspect(p)
    missing = [s for s in require_splits if s not in info.splits]
    if missing:
        have = ", ".join(info.splits) or "none"
        raise DataFormatError(
            f"{p}: split file missing: {', '.join(missing)} (has: {have})",
            hint=f"add {' and '.join(missing)} to the {fmt} dataset",
        )
    return info


def read_split(path: str | Path, format: str | None, split: str) -> list[dict]:
    """The rows of one split as plain dicts (columnar nulls in extra fields are dropped), each
    checked for its row shape: the same rows, or the same error, in plan, training and evaluation."""
    p, fmt = _resolve(path, format)
    return REGISTRY[fmt].read(p, split)


def read_dataset(path: str | Path, format: str | None = None) -> tuple[DatasetInfo, dict[str, list[dict]]]:
    """Every split's rows, for converters (small data only: everything is held in memory)."""
    info = inspect_dataset(path, format)
    if info.format == "instruct_json":  # already validated by inspect_dataset: parse the file once
        return info, instruct_json.instruct_splits(Path(info.path))
    return info, {s: read_split(info.path, info.format, s) for s in info.splits}
