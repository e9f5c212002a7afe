"""What every dataset format shares: the record a format is (Format), what inspection returns
(DatasetInfo), the error, the layout detection looks at, and the file helpers the formats read with.

Standard library only (the compiler inspects datasets at plan time); pyarrow is imported by `pyarrow()`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from cruijff.errors import CruijffError, ExitCode, Location

SPLITS = ("train", "validation", "test")  # the conventional names, in this order
# The chat roles a row may use: what training's chat template and inspect's chat messages both take.
ROLES = ("system", "user", "assistant")

# The row shape of a dataset, independent of its file format.
INSTRUCT, CHAT, TEXT = "instruct", "chat", "text"

DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow"}


class DataFormatError(CruijffError):
    """A dataset file or folder is not what its format requires."""

    exit_code = ExitCode.INVALID


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset holds, as far as planning needs to know: splits, row counts, fields."""

    path: str  # absolute
    format: str  # one of FORMATS
    splits: dict[str, int]  # split name -> row count, in file/declaration order
    fields: tuple[str, ...]  # row keys / columns (input and output first for instruct data)
    kind: str  # row shape: instruct | chat | text

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "kind": self.kind,
            "splits": dict(self.splits),
            "fields": list(self.fields),
        }


@dataclass(frozen=True)
class Format:
    """One dataset format: its layout, how to detect, inspect and read it."""

    name: str
    layout: str
    split_suffixes: tuple[str, ...]  # split files in a folder of this format (() for none)
    in_manifest: bool  # a manifest may name it (datasets.<name>.format); else `cruijff data` only
    takes_template: bool  # may hold instruct rows, which the manifest's prompt template formats
    detect: Callable[[Layout], bool]  # whether a path's layout is this format (file names, first row)
    inspect: Callable[[Path], DatasetInfo]
    read: Callable[[Path, str], list[dict]]


class Layout:
    """What detection looks at, each fact computed once: the file's suffix, or the folder's split files."""

    def __init__(self, path: Path):
        self.path = path

    @cached_property
    def file_suffix(self) -> str | None:
        """The suffix of a file (lower case); None for a folder."""
        return self.path.suffix.lower() if self.path.is_file() else None

    @cached_property
    def arrow_saved(self) -> bool:
        """A folder written by datasets' save_to_disk."""
        p = self.path
        return p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file())

    @cached_property
    def split_names(self) -> list[str]:
        """The split files of a folder that is not an arrow save, all of one family (json or parquet);
        [] for a file or an arrow save. A folder of none, of mixed families or of loose .arrow files
        is an error."""
        p = self.path
        if not p.is_dir() or self.arrow_saved:
            return []
        families = folder_families(p)
        if not families:
            raise DataFormatError(
                f"{p}: folder holds no split files",
                hint="expected <split>.json (chat_json, text), <split>.jsonl (text) or <split>.parquet",
            )
        if len(families) > 1:
            listing = ", ".join(f"{fam}: {', '.join(names)}" for fam, names in sorted(families.items()))
            raise DataFormatError(f"{p}: mixed formats in one folder ({listing})",
                                  hint="keep one format per dataset folder")
        family, names = next(iter(families.items()))
        if family == "arrow":
            raise DataFormatError(f"{p}: loose .arrow files without state.json/dataset_dict.json",
                                  hint="save arrow datasets with datasets' save_to_disk")
        return names

    @cached_property
    def split_family(self) -> str | None:
        """json or parquet: the family of split_names (None for a file or an arrow save)."""
        return DATA_SUFFIXES[Path(self.split_names[0]).suffix.lower()] if self.split_names else None

    @cached_property
    def text_rows(self) -> bool:
        """A json folder whose rows are {"text"}: any .jsonl file, or a first row with text and no messages."""
        if self.split_family != "json":
            return False
        if any(n.endswith(".jsonl") for n in self.split_names):
            return True
        first = first_row(self.path / self.split_names[0])
        return isinstance(first, dict) and "text" in first and "messages" not in first


# ---------------------------------------------------------------------------------------------
# helpers


def folder_families(folder: Path) -> dict[str, list[str]]:
    families: dict[str, list[str]] = {}
    for f in sorted(folder.iterdir()):
        fam = DATA_SUFFIXES.get(f.suffix.lower())
        if f.is_file() and fam and not f.name.startswith("."):
            families.setdefault(fam, []).append(f.name)
    return families


def first_row(path: Path) -> Any:
    rows = load_json(path)
    return rows[0] if isinstance(rows, list) and rows else None


def split_files(p: Path, fmt: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not p.is_dir():
        raise DataFormatError(f"{p}: {fmt} is a folder of split files, not a file",
                              hint=f"put {' / '.join('<split>' + s for s in suffixes)} in a folder")
    families = folder_families(p)
    wanted = {DATA_SUFFIXES[s] for s in suffixes}
    other = {fam: names for fam, names in families.items() if fam not in wanted}
    if other:
        listing = ", ".join(n for names in other.values() for n in names)
        raise DataFormatError(f"{p}: mixed formats in one folder: {fmt} folder also holds {listing}",
                              hint="keep one format per dataset folder")
    files: dict[str, Path] = {}
    for f in sorted(p.iterdir()):
        if f.is_file() and f.suffix.lower() in suffixes and not f.name.startswith("."):
            if f.stem in files:
                raise DataFormatError(f"{p}: split {f.stem!r} appears twice ({files[f.stem].name}, {f.name})")
            files[f.stem] = f
    if not files:
        raise DataFormatError(f"{p}: no split files for {fmt}",
                              hint=f"expected {' or '.join('train' + s for s in suffixes)}, ...")
    return conventional_order(files)


def split_rows(p: Path, fmt: Format, split: str) -> tuple[Path, list]:
    """A folder format's split: its file and rows (chat_json and text check the rows themselves)."""
    files = split_files(p, fmt.name, fmt.split_suffixes)
    require_split(p, split, list(files))
    f = files[split]
    return f, load_rows(f)


def conventional_order(files: dict[str, Any]) -> dict[str, Any]:
    known = [s for s in SPLITS if s in files]
    return {s: files[s] for s in known + sorted(set(files) - set(known))}


def require_split(p: Path, split: str, have: list[str]) -> None:
    if split not in have:
        raise DataFormatError(f"{p}: split file missing: {split!r} (has: {', '.join(have) or 'none'})")


def expect_file(p: Path, fmt: str, what: str) -> None:
    if not p.is_file():
        raise DataFormatError(f"{p}: {fmt} is {what}, but this is a folder",
                              hint="give the .json file, or the right format for the folder")


def load_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason})") from None
    except OSError as e:
        raise DataFormatError(f"{path}: cannot read ({e.strerror})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"not JSON: {e.msg}", location=Location(str(path), e.lineno, e.colno),
                              hint="check the file is valid JSON") from None


def load_rows(path: Path) -> list:
    """A split file: a JSON list (.json), or one JSON object per line (.jsonl)."""
    if path.suffix.lower() == ".jsonl":
        rows = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataFormatError(f"not JSON: {e.msg}", location=Location(str(path), n, e.colno),
                                          hint=".jsonl holds one JSON object per line") from None
        return rows
    rows = load_json(path)
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: top level is {kind(rows)}, but a split file is a list of rows")
    return rows


def read_txt(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason})") from None
    return [line for line in lines if line.strip()]


def kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def pyarrow(what: str):
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataFormatError(f"reading {what} datasets needs pyarrow, which is not installed",
                              hint="pip install 'cruijff[kit]' (or pyarrow)") from None
    return pyarrow


# ---------------------------------------------------------------------------------------------
# columnar formats (parquet, arrow)


def kind_of_columns(columns: tuple[str, ...], p: Path) -> str:
    if "input" in columns and "output" in columns:
        return INSTRUCT
    if "messages" in columns:
        return CHAT
    if "text" in columns:
        return TEXT
    raise DataFormatError(f"{p}: columns {list(columns)} hold no input/output, messages or text",
                          hint="rename the columns, or convert the data with cruijff data convert")


def ordered(columns: tuple[str, ...], kind: str) -> tuple[str, ...]:
    first = {INSTRUCT: ("input", "output"), CHAT: ("messages",), TEXT: ("text",)}[kind]
    return first + tuple(c for c in columns if c not in first)


def drop_nulls(rows: list[dict]) -> list[dict]:
    # Columnar formats cannot say "absent": a row without an extra field reads back as null.
    return [{k: v for k, v in r.items() if v is not None or k in ("input", "output", "messages", "text")}
            for r in rows]
