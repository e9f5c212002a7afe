"""Loading manifests: every value traced to file:line:col, and clear errors for unreadable ones."""

from __future__ import annotations

import pytest

from cruijff.errors import ManifestError
from cruijff.compiler.source import load, to_plain

TEXT = """\
experiment: x
models:
  tiny: {path: model, family: custom}
  big:
    path: /models/big
grid:
  lr: [1.0e-4, 3.0e-4]
"""


@pytest.fixture
def source(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text(TEXT)
    return load(p)


def test_locate_values_keys_and_items(source):
    f = source.display
    assert str(source.locate(["experiment"])) == f"{f}:1:13"
    assert str(source.locate(["experiment"], key=True)) == f"{f}:1:1"
    assert str(source.locate(["models", "tiny", "family"])) == f"{f}:3:31"
    assert str(source.locate(["models", "big", "path"])) == f"{f}:5:11"
    assert str(source.locate(["models", "big"], key=True)) == f"{f}:4:3"
    assert str(source.locate(["grid", "lr", 1])) == f"{f}:7:16"


def test_locate_falls_back_to_the_deepest_existing_part(source):
    f = source.display
    assert str(source.locate(["models", "big", "resources", "gpus"])) == str(source.locate(["models", "big"]))
    assert str(source.locate(["grid", "lr", 9])) == f"{f}:7:7"
    assert str(source.locate([])) == f"{f}:1:1"


def test_to_plain(source):
    data = to_plain(source.data)
    assert type(data) is dict and type(data["grid"]["lr"]) is list
    assert data["grid"]["lr"] == [1e-4, 3e-4] and type(data["grid"]["lr"][0]) is float


@pytest.mark.parametrize("text,message,where", [
    ("", "the manifest is empty", "1:1"),
    ("# only a comment\n", "the manifest is empty", "1:1"),
    ("- a\n- b\n", "must be a mapping", "1:1"),
    ("a: 1\na: 2\n", "", "2:1"),
    ("a: [1, 2\nb: 3\n", "YAML syntax error", ""),
    ("a:\n\tb: 1\n", "YAML syntax error", "2:1"),
])
def test_unloadable_manifests(tmp_path, text, message, where):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    with pytest.raises(ManifestError) as info:
        load(p)
    (problem,) = info.value.problems
    assert message in problem.message
    assert problem.location.file == str(p)
    if where:
        assert f"{problem.location.line}:{problem.location.col}" == where
    else:
        assert problem.location.line is not None


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(ManifestError, match="is a directory"):
        load(tmp_path)
