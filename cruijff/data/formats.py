"""Dataset formats: detect, inspect and read them, with one clear error per problem.

This is the only dataset reader: the plan-time check, training (cruijff.train.datasets) and
evaluation (cruijff.tasks) all read through `read_split`, so a dataset that plans also trains and
evaluates, and reads the same rows in both (issue 15). Each format is one `Format` record in
REGISTRY (layout, inspector, reader); FORMATS lists them and MANIFEST_FORMATS, the ones a
manifest may name, equals the schema's enum (tests/unit/test_data_formats.py).

`inspect_dataset` runs at plan time inside the compiler, so this module imports only the stdlib at
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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cruijff.errors import CruijffError, ExitCode, Location

SPLITS = ("train", "validation", "test")  # the conventional names, in this order
# The chat roles a row may use: what training's chat template and inspect's chat messages both take.
ROLES = ("system", "user", "assistant")

# The row shape of a dataset, independent of its file format.
INSTRUCT, CHAT, TEXT = "instruct", "chat", "text"

_DATA_SUFFIXES = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".arrow": "arrow"}


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


# ---------------------------------------------------------------------------------------------
# detection


def detect_format(path: str | Path) -> str:
    """The format of a file or folder, from its layout alone (file names, not contents)."""
    p = Path(path)
    if not p.exists():
        raise DataFormatError(f"dataset not found: {p}", hint="check the path")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".json":
            return "instruct_json"
        if suffix == ".txt":
            return "text"
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
    if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
        return "arrow"
    families = _folder_families(p)
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
    if family == "parquet":
        return "parquet"
    if family == "arrow":
        raise DataFormatError(f"{p}: loose .arrow files without state.json/dataset_dict.json",
                              hint="save arrow datasets with datasets' save_to_disk")
    if any(n.endswith(".jsonl") for n in names):
        return "text"
    first = _first_row(p / names[0])
    if isinstance(first, dict) and "text" in first and "messages" not in first:
        return "text"
    return "chat_json"


def _folder_families(folder: Path) -> dict[str, list[str]]:
    families: dict[str, list[str]] = {}
    for f in sorted(folder.iterdir()):
        fam = _DATA_SUFFIXES.get(f.suffix.lower())
        if f.is_file() and fam and not f.name.startswith("."):
            families.setdefault(fam, []).append(f.name)
    return families


def _first_row(path: Path) -> Any:
    rows = _load_json(path)
    return rows[0] if isinstance(rows, list) and rows else None


# ---------------------------------------------------------------------------------------------
# inspection


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


def _inspect_instruct_json(p: Path) -> DatasetInfo:
    _expect_file(p, "instruct_json", "one .json file")
    data = _instruct_splits(p)
    fields: dict[str, None] = {"input": None, "output": None}
    for split, rows in data.items():
        for i, row in enumerate(rows):
            _check_instruct_row(row, p, f"{split}[{i}]")
            fields.update(dict.fromkeys(row))
    return DatasetInfo(str(p), "instruct_json", {s: len(r) for s, r in data.items()},
                       tuple(fields), INSTRUCT)


def _instruct_splits(p: Path) -> dict[str, list]:
    data = _load_json(p)
    if isinstance(data, list):
        raise DataFormatError(
            f"{p}: top level is a list, but instruct_json needs an object of splits",
            hint='write {"train": [...], "validation": [...], "test": [...]} '
                 "(a list of {messages} rows is one chat_json split: give its folder)",
        )
    if not isinstance(data, dict):
        raise DataFormatError(f"{p}: top level is {_kind(data)}, but instruct_json needs an object "
                              'of splits like {"train": [...]}')
    if not data:
        raise DataFormatError(f"{p}: no splits", hint='write {"train": [{"input": ..., "output": ...}]}')
    for split, rows in data.items():
        if not isinstance(rows, list):
            raise DataFormatError(f"{p}: split {split!r} is {_kind(rows)}, not a list of rows")
    return data


def _check_instruct_row(row: Any, p: Path, where: str) -> None:
    if not isinstance(row, dict):
        raise DataFormatError(f"{p}: {where} is {_kind(row)}, not an object with input and output")
    for key in ("input", "output"):
        if key not in row:
            raise DataFormatError(f"{p}: {where} is missing {key!r}",
                                  hint='every row needs "input" and "output"')
        if not isinstance(row[key], str):
            raise DataFormatError(f"{p}: {where}.{key} is {_kind(row[key])}, not a string",
                                  hint="write values as strings, e.g. \"1\" rather than 1")


def _inspect_chat_json(p: Path) -> DatasetInfo:
    files = _split_files(p, "chat_json", REGISTRY["chat_json"].split_suffixes)
    splits: dict[str, int] = {}
    fields: dict[str, None] = {"messages": None}
    for split, f in files.items():
        rows = _load_rows(f)
        for i, row in enumerate(rows):
            _check_chat_row(row, f, f"row {i}")
            fields.update(dict.fromkeys(row))
        splits[split] = len(rows)
    return DatasetInfo(str(p), "chat_json", splits, tuple(fields), CHAT)


def _check_chat_row(row: Any, f: Path, where: str) -> None:
    if not isinstance(row, dict) or "messages" not in row:
        raise DataFormatError(f"{f}: {where} has no 'messages'",
                              hint='rows look like {"messages": [{"role": "user", "content": "..."}]}')
    messages = row["messages"]
    if not isinstance(messages, list) or not messages:
        raise DataFormatError(f"{f}: {where}: 'messages' must be a non-empty list")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataFormatError(f"{f}: {where}, message {j}: needs 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataFormatError(f"{f}: {where}, message {j}: unknown role {m['role']!r}",
                                  hint=f"roles: {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise DataFormatError(f"{f}: {where}, message {j}: content is {_kind(m['content'])}, "
                                  "not a string")


def _inspect_text(p: Path) -> DatasetInfo:
    if p.is_file():
        if p.suffix.lower() != ".txt":
            raise DataFormatError(f"{p}: a text dataset file must end in .txt",
                                  hint="or use a folder of <split>.json / <split>.jsonl")
        return DatasetInfo(str(p), "text", {"train": len(_read_txt(p))}, ("text",), TEXT)
    files = _split_files(p, "text", REGISTRY["text"].split_suffixes)
    fields: dict[str, None] = {"text": None}
    splits: dict[str, int] = {}
    for split, f in files.items():
        rows = _load_rows(f)
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataFormatError(f"{f}: row {i} has no string 'text'",
                                      hint='rows look like {"text": "..."}')
            fields.update(dict.fromkeys(row))
        splits[split] = len(rows)
    return DatasetInfo(str(p), "text", splits, tuple(fields), TEXT)


def _inspect_parquet(p: Path) -> DatasetInfo:
    pq = _pyarrow("parquet").parquet
    files = _split_files(p, "parquet", (".parquet",))
    splits: dict[str, int] = {}
    columns: tuple[str, ...] | None = None
    for split, f in files.items():
        try:
            meta = pq.read_metadata(f)
        except Exception as e:  # pyarrow raises ArrowInvalid/OSError for non-parquet bytes
            raise DataFormatError(f"{f}: not a parquet file ({e})") from None
        names = tuple(meta.schema.to_arrow_schema().names)
        if columns is not None and set(names) != set(columns):
            raise DataFormatError(f"{f}: columns {list(names)} differ from the other splits' "
                                  f"{list(columns)}")
        columns = columns or names
        splits[split] = meta.num_rows
    kind = _kind_of_columns(columns or (), p)
    return DatasetInfo(str(p), "parquet", splits, _ordered(columns or (), kind), kind)


def _inspect_arrow(p: Path) -> DatasetInfo:
    if p.is_file():
        raise DataFormatError(f"{p}: arrow datasets are folders written by save_to_disk")
    ipc = _pyarrow("arrow").ipc
    splits: dict[str, int] = {}
    columns: tuple[str, ...] | None = None
    for split, folder in _arrow_split_dirs(p).items():
        names = tuple(_arrow_features(folder) or ())
        count = 0
        for f in _arrow_data_files(folder):
            try:
                with _pyarrow("arrow").memory_map(str(f)) as source:
                    reader = ipc.open_stream(source)
                    names = names or tuple(reader.schema.names)
                    count += sum(batch.num_rows for batch in reader)  # zero-copy on a memory map
            except DataFormatError:
                raise
            except Exception as e:
                raise DataFormatError(f"{f}: not an arrow stream file ({e})") from None
        columns = columns or names
        splits[split] = count
    kind = _kind_of_columns(columns or (), p)
    return DatasetInfo(str(p), "arrow", splits, _ordered(columns or (), kind), kind)


# ---------------------------------------------------------------------------------------------
# reading


def read_split(path: str | Path, format: str | None, split: str) -> list[dict]:
    """The rows of one split as plain dicts (columnar nulls in extra fields are dropped), each
    checked for its row shape: the same rows, or the same error, in plan, training and evaluation."""
    p, fmt = _resolve(path, format)
    return REGISTRY[fmt].read(p, split)


def _read_instruct_json(p: Path, split: str) -> list[dict]:
    _expect_file(p, "instruct_json", "one .json file")
    data = _instruct_splits(p)
    _require_split(p, split, list(data))
    rows = data[split]
    for i, row in enumerate(rows):
        _check_instruct_row(row, p, f"{split}[{i}]")
    return rows


def _read_split_file(p: Path, fmt: str, split: str) -> list[dict]:
    """chat_json and text folders: the split's .json (or, for text, .jsonl) file, checked row by row."""
    files = _split_files(p, fmt, REGISTRY[fmt].split_suffixes)
    _require_split(p, split, list(files))
    f = files[split]
    rows = _load_rows(f)
    for i, row in enumerate(rows):
        if fmt == "chat_json":
            _check_chat_row(row, f, f"row {i}")
        elif not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataFormatError(f"{f}: row {i} has no string 'text'", hint='rows look like {"text": "..."}')
    return rows


def _read_text(p: Path, split: str) -> list[dict]:
    if p.is_file():
        if p.suffix.lower() != ".txt":
            raise DataFormatError(f"{p}: a text dataset file must end in .txt",
                                  hint="or use a folder of <split>.json / <split>.jsonl")
        _require_split(p, split, ["train"])
        return [{"text": line} for line in _read_txt(p)]
    return _read_split_file(p, "text", split)


def _read_parquet(p: Path, split: str) -> list[dict]:
    files = _split_files(p, "parquet", (".parquet",))
    _require_split(p, split, list(files))
    pq = _pyarrow("parquet").parquet
    return _checked_columnar(_drop_nulls(pq.read_table(files[split]).to_pylist()), files[split])


def _read_arrow(p: Path, split: str) -> list[dict]:
    dirs = _arrow_split_dirs(p)
    _require_split(p, split, list(dirs))
    pa = _pyarrow("arrow")
    tables = []
    for f in _arrow_data_files(dirs[split]):
        with pa.memory_map(str(f)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    if not tables:
        return []
    return _checked_columnar(_drop_nulls(pa.concat_tables(tables).to_pylist()), dirs[split])


def _checked_columnar(rows: list[dict], f: Path) -> list[dict]:
    """Chat rows of a parquet or arrow split meet the chat_json rules (roles, content)."""
    for i, row in enumerate(rows):
        if row.get("messages") is not None:
            row["messages"] = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m
                               for m in row["messages"]]
            _check_chat_row(row, f, f"row {i}")
    return rows


def read_dataset(path: str | Path, format: str | None = None) -> tuple[DatasetInfo, dict[str, list[dict]]]:
    """Every split's rows, for converters (small data only: everything is held in memory)."""
    info = inspect_dataset(path, format)
    if info.format == "instruct_json":  # already validated by inspect_dataset: parse the file once
        return info, _instruct_splits(Path(info.path))
    return info, {s: read_split(info.path, info.format, s) for s in info.splits}


def _require_split(p: Path, split: str, have: list[str]) -> None:
    if split not in have:
        raise DataFormatError(f"{p}: split file missing: {split!r} (has: {', '.join(have) or 'none'})")


def _drop_nulls(rows: list[dict]) -> list[dict]:
    # Columnar formats cannot say "absent": a row without an extra field reads back as null.
    return [{k: v for k, v in r.items() if v is not None or k in ("input", "output", "messages", "text")}
            for r in rows]


# ---------------------------------------------------------------------------------------------
# helpers


def _split_files(p: Path, fmt: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if not p.is_dir():
        raise DataFormatError(f"{p}: {fmt} is a folder of split files, not a file",
                              hint=f"put {' / '.join('<split>' + s for s in suffixes)} in a folder")
    families = _folder_families(p)
    wanted = {_DATA_SUFFIXES[s] for s in suffixes}
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
    return _conventional_order(files)


def _conventional_order(files: dict[str, Any]) -> dict[str, Any]:
    known = [s for s in SPLITS if s in files]
    return {s: files[s] for s in known + sorted(set(files) - set(known))}


def _arrow_split_dirs(p: Path) -> dict[str, Path]:
    dd = p / "dataset_dict.json"
    if dd.is_file():
        meta = _load_json(dd)
        names = meta.get("splits") if isinstance(meta, dict) else None
        if not isinstance(names, list):
            raise DataFormatError(f"{dd}: expected {{\"splits\": [...]}}")
        dirs = {}
        for name in names:
            if not (p / name / "state.json").is_file():
                raise DataFormatError(f"{p}: split file missing: {name}/state.json")
            dirs[name] = p / name
        return dirs
    if (p / "state.json").is_file():
        return {"train": p}  # one Dataset, not a DatasetDict
    raise DataFormatError(f"{p}: not an arrow dataset (no dataset_dict.json or state.json)",
                          hint="write it with datasets' save_to_disk")


def _arrow_data_files(folder: Path) -> list[Path]:
    state = _load_json(folder / "state.json")
    entries = state.get("_data_files") if isinstance(state, dict) else None
    if not isinstance(entries, list):
        raise DataFormatError(f"{folder / 'state.json'}: no _data_files list")
    files = []
    for e in entries:
        f = folder / e["filename"]
        if not f.is_file():
            raise DataFormatError(f"{folder}: data file missing: {e['filename']}")
        files.append(f)
    return files


def _arrow_features(folder: Path) -> list[str] | None:
    info = folder / "dataset_info.json"
    if not info.is_file():
        return None
    features = _load_json(info).get("features")
    return list(features) if isinstance(features, dict) else None


def _kind_of_columns(columns: tuple[str, ...], p: Path) -> str:
    if "input" in columns and "output" in columns:
        return INSTRUCT
    if "messages" in columns:
        return CHAT
    if "text" in columns:
        return TEXT
    raise DataFormatError(f"{p}: columns {list(columns)} hold no input/output, messages or text",
                          hint="rename the columns, or convert the data with cruijff data convert")


def _ordered(columns: tuple[str, ...], kind: str) -> tuple[str, ...]:
    first = {INSTRUCT: ("input", "output"), CHAT: ("messages",), TEXT: ("text",)}[kind]
    return first + tuple(c for c in columns if c not in first)


def _expect_file(p: Path, fmt: str, what: str) -> None:
    if not p.is_file():
        raise DataFormatError(f"{p}: {fmt} is {what}, but this is a folder",
                              hint="give the .json file, or the right format for the folder")


def _load_json(path: Path) -> Any:
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


def _load_rows(path: Path) -> list:
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
    rows = _load_json(path)
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: top level is {_kind(rows)}, but a split file is a list of rows")
    return rows


def _read_txt(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason})") from None
    return [line for line in lines if line.strip()]


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _pyarrow(what: str):
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataFormatError(f"reading {what} datasets needs pyarrow, which is not installed",
                              hint="pip install 'cruijff[kit]' (or pyarrow)") from None
    return pyarrow


# ---------------------------------------------------------------------------------------------
# the formats


@dataclass(frozen=True)
class Format:
    """One dataset format: its layout, how to inspect it at plan time, and how to read a split."""

    name: str
    layout: str
    split_suffixes: tuple[str, ...]  # split files in a folder of this format (() for none)
    in_manifest: bool  # a manifest may name it (datasets.<name>.format); else `cruijff data` only
    takes_template: bool  # may hold instruct rows, which the manifest's prompt template formats
    inspect: Callable[[Path], DatasetInfo]
    read: Callable[[Path, str], list[dict]]


REGISTRY: dict[str, Format] = {f.name: f for f in (
    Format("instruct_json", 'one JSON file {"train": [{"input", "output"}], ...}', (), True, True,
           _inspect_instruct_json, _read_instruct_json),
    Format("chat_json", 'a folder of <split>.json lists of {"messages": [{"role", "content"}]}', (".json",), True, False,
           _inspect_chat_json, lambda p, split: _read_split_file(p, "chat_json", split)),
    Format("parquet", "a folder of <split>.parquet (input/output, messages or text columns)", (".parquet",), True, True,
           _inspect_parquet, _read_parquet),
    Format("arrow", "a datasets save_to_disk folder", (), False, True, _inspect_arrow, _read_arrow),
    Format("text", 'a folder of <split>.json / .jsonl rows {"text"}, or one .txt file', (".json", ".jsonl"), True, False,
           _inspect_text, _read_text),
)}
FORMATS = tuple(REGISTRY)
MANIFEST_FORMATS = tuple(name for name, f in REGISTRY.items() if f.in_manifest)
