"""Arrays with their row ids and provenance in one HDF5 file.

Layout: dataset `ids` (UTF-8 strings), one dataset per array (rows aligned with `ids`), and
the attributes twice: as plain HDF5 attributes for other tools (None and containers as JSON
text) and as one JSON attribute `cruijff_attrs`, which loads back exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from cruijff.errors import CruijffError, UsageError

IDS = "ids"
ATTRS_JSON = "cruijff_attrs"


class HDF5Error(CruijffError):
    """An HDF5 file could not be read or has not the layout cruijff writes."""


@dataclass
class StoredArrays:
    ids: list[str]
    arrays: dict[str, Any] = field(default_factory=dict)  # name -> numpy array
    attrs: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str):
        return self.arrays[name]


def _numpy(value) -> Any:
    import numpy as np

    if hasattr(value, "detach"):  # torch tensor; numpy has no bfloat16
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value)


def save_tensors(path: str | Path, ids: Sequence[Any], arrays: Mapping[str, Any] | Any,
                 attrs: Mapping[str, Any] | None = None) -> Path:
    """Write arrays (a mapping name -> array, or one array stored as `values`) keyed by string ids."""
    import h5py

    if not isinstance(arrays, Mapping):
        arrays = {"values": arrays}
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        raise UsageError("row ids are not unique", hint="give every row a distinct id")
    attrs = dict(attrs or {})
    try:
        text = json.dumps(attrs)
    except TypeError as e:
        raise UsageError(f"attributes must be JSON-serialisable: {e}") from e
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(out, "w") as f:
        f.create_dataset(IDS, data=ids, dtype=h5py.string_dtype("utf-8"))
        for name, value in arrays.items():
            if name == IDS:
                raise UsageError(f"an array may not be called {IDS!r}")
            data = _numpy(value)
            if data.shape[:1] != (len(ids),):
                raise UsageError(f"array {name!r} has {data.shape[0] if data.ndim else 0} rows for {len(ids)} ids")
            f.create_dataset(name, data=data)
        for key, value in attrs.items():
            f.attrs[key] = _plain(value)
        f.attrs[ATTRS_JSON] = text
    return out


def load_tensors(path: str | Path) -> StoredArrays:
    """Read back what save_tensors wrote (arrays as numpy)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise HDF5Error(f"cannot open HDF5 file {path}: {e}") from e
    with f:
        if IDS not in f:
            raise HDF5Error(f"{path} has no {IDS!r} dataset", hint="was it written by cruijff embed/logits?")
        ids = [i.decode("utf-8") if isinstance(i, bytes) else str(i) for i in f[IDS][()]]
        arrays = {name: f[name][()] for name in f if name != IDS}
        if ATTRS_JSON in f.attrs:
            attrs = json.loads(f.attrs[ATTRS_JSON])
        else:
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    return StoredArrays(ids, arrays, attrs)
