"""parquet: a folder of `<split>.parquet` (columns input/output, messages, or text). Row counts come
from file metadata, never from reading the data; pyarrow is imported when a parquet dataset is read."""

from __future__ import annotations

from pathlib import Path

from cruijff.data.formats.base import (DataFormatError, DatasetInfo, Format, drop_nulls, kind_of_columns,
                                       ordered, pyarrow, require_split, split_files)
from cruijff.data.formats.chat_json import checked_columnar


def inspect(p: Path) -> DatasetInfo:
    pq = pyarrow("parquet").parquet
    files = split_files(p, "parquet", (".parquet",))
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
    kind = kind_of_columns(columns or (), p)
    return DatasetInfo(str(p), "parquet", splits, ordered(columns or (), kind), kind)


def read(p: Path, split: str) -> list[dict]:
    files = split_files(p, "parquet", (".parquet",))
    require_split(p, split, list(files))
    pq = pyarrow("parquet").parquet
    return checked_columnar(drop_nulls(pq.read_table(files[split]).to_pylist()), files[split])


FORMAT = Format(
    "parquet", "a folder of <split>.parquet (input/output, messages or text columns)", (".parquet",),
    in_manifest=True, takes_template=True, detect=lambda layout: layout.split_family == "parquet",
    inspect=inspect, read=read)
