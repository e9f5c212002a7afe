"""Datasets: formats (inspect, read), converters and generators; see docs/data.md.

Only the light, stdlib-only format layer is re-exported here: the compiler imports it at plan time.
"""

from cruijff.data.formats import (
    FORMATS,
    SPLITS,
    DataFormatError,
    DatasetInfo,
    detect_format,
    inspect_dataset,
    read_dataset,
    read_split,
)

__all__ = [
    "FORMATS",
    "SPLITS",
    "DataFormatError",
    "DatasetInfo",
    "detect_format",
    "inspect_dataset",
    "read_dataset",
    "read_split",
]
