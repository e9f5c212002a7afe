"""HDF5 round-trip: ids, values and attributes come back as written."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import require

require(importlib.util.find_spec("h5py") is not None, "h5py is not installed")

import numpy as np  # noqa: E402

from cruijff.errors import CruijffError, UsageError  # noqa: E402
from cruijff.llm import load_tensors, save_tensors  # noqa: E402


def test_round_trip_preserves_ids_values_and_attrs(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["row-0", "ünïcode/1", "42", "a b c"]
    emb = rng.standard_normal((4, 8)).astype(np.float32)
    probs = rng.random((4, 2))
    attrs = {"model": "/m", "layer": -1, "pooling": "mean", "chat_template": True, "system": None,
             "answers": ["0", "1"], "nested": {"a": [1, 2]}}
    path = save_tensors(tmp_path / "sub" / "out.h5", ids, {"embeddings": emb, "probs": probs}, attrs)
    got = load_tensors(path)
    assert got.ids == ids
    assert set(got.arrays) == {"embeddings", "probs"}
    assert got["embeddings"].dtype == np.float32 and np.array_equal(got["embeddings"], emb)
    assert np.array_equal(got["probs"], probs)
    assert got.attrs == attrs


def test_plain_attributes_are_readable_by_other_tools(tmp_path):
    import h5py

    save_tensors(tmp_path / "x.h5", [1, 2], np.zeros((2, 3)), {"layer": -2, "system": None, "answers": ["0"]})
    with h5py.File(tmp_path / "x.h5") as f:
        assert f.attrs["layer"] == -2
        assert f.attrs["system"] == "null"
        assert f.attrs["answers"] == '["0"]'
        assert f["values"].shape == (2, 3)
    assert load_tensors(tmp_path / "x.h5").ids == ["1", "2"]  # ids are stored as strings


def test_torch_tensors_including_bfloat16(tmp_path):
    require(importlib.util.find_spec("torch") is not None, "torch is not installed")
    import torch

    t = torch.arange(6, dtype=torch.bfloat16).reshape(3, 2)
    save_tensors(tmp_path / "t.h5", ["a", "b", "c"], {"x": t})
    assert np.array_equal(load_tensors(tmp_path / "t.h5")["x"], t.float().numpy())


def test_rejects_mismatched_rows_and_duplicate_ids(tmp_path):
    with pytest.raises(UsageError, match="rows"):
        save_tensors(tmp_path / "a.h5", ["a", "b"], np.zeros((3, 2)))
    with pytest.raises(UsageError, match="unique"):
        save_tensors(tmp_path / "a.h5", ["a", "a"], np.zeros((2, 2)))


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(CruijffError, match="cannot open"):
        load_tensors(bad)
