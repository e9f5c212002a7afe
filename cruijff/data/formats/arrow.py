"""arrow: a `datasets` save_to_disk folder (DatasetDict, or one Dataset = split "train"); `cruijff data`
only, a manifest cannot name it. pyarrow is imported when an arrow dataset is read."""

from __future__ import annotations

from pathlib import Path

from cruijff.data.formats.base import (DataFormatError, DatasetInfo, Format, drop_nulls, kind_of_columns,
                                       load_json, ordered, pyarrow, require_split)
from cruijff.data.formats.chat_json import checked_columnar


def inspect(p: Path) -> DatasetInfo:
    if p.is_file():
        raise DataFormatError(f"{p}: arrow datasets are folders written by save_to_disk")
    ipc = pyarrow("arrow").ipc
    splits: dict[str, int] = {}
    columns: tuple[str, ...] | None = None
    for split, folder in arrow_split_dirs(p).items():
        names = tuple(arrow_features(folder) or ())
        count = 0
        for f in arrow_data_files(folder):
            try:
                with pyarrow("arrow").memory_map(str(f)) as source:
                    reader = ipc.open_stream(source)
                    names = names or tuple(reader.schema.names)
                    count += sum(batch.num_rows for batch in reader)  # zero-copy on a memory map
            except DataFormatError:
                raise
            except Exception as e:
                raise DataFormatError(f"{f}: not an arrow stream file ({e})") from None
        columns = columns or names
        splits[split] = count
    kind = kind_of_columns(columns or (), p)
    return DatasetInfo(str(p), "arrow", splits, ordered(columns or (), kind), kind)


def read(p: Path, split: str) -> list[dict]:
    dirs = arrow_split_dirs(p)
    require_split(p, split, list(dirs))
    pa = pyarrow("arrow")
    tables = []
    for f in arrow_data_files(dirs[split]):
        with pa.memory_map(str(f)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    if not tables:
        return []
    return checked_columnar(drop_nulls(pa.concat_tables(tables).to_pylist()), dirs[split])


def arrow_split_dirs(p: Path) -> dict[str, Path]:
    dd = p / "dataset_dict.json"
    if dd.is_file():
        meta = load_json(dd)
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


def arrow_data_files(folder: Path) -> list[Path]:
    state = load_json(folder / "state.json")
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


def arrow_features(folder: Path) -> list[str] | None:
    info = folder / "dataset_info.json"
    if not info.is_file():
        return None
    features = load_json(info).get("features")
    return list(features) if isinstance(features, dict) else None


FORMAT = Format("arrow", "a datasets save_to_disk folder", (), in_manifest=False, takes_template=True,
                detect=lambda layout: layout.arrow_saved, inspect=inspect, read=read)
