"""Dataset formats: detection, inspection (row counts, fields) and one clear error per problem."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cruijff.data.formats import (
    DataFormatError,
    DatasetInfo,
    detect_format,
    inspect_dataset,
    read_split,
)
from cruijff.errors import CruijffError, ExitCode
from tests.conftest import require

ROWS = [{"input": f"word{i}", "output": f"Word{i}"} for i in range(5)]


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}


@pytest.fixture
def instruct(tmp_path) -> Path:
    return write_json(tmp_path / "data.json", {"train": ROWS, "validation": ROWS[:2], "test": ROWS[:1]})


@pytest.fixture
def chat_dir(tmp_path) -> Path:
    d = tmp_path / "chat"
    write_json(d / "train.json", [chat(i) for i in range(4)])
    write_json(d / "test.json", [chat(i) for i in range(2)])
    return d


def test_instruct_json_inspected(instruct):
    info = inspect_dataset(instruct)
    assert isinstance(info, DatasetInfo)
    assert info.format == "instruct_json" and info.kind == "instruct"
    assert info.splits == {"train": 5, "validation": 2, "test": 1}
    assert info.fields == ("input", "output")
    assert info.path == str(instruct.resolve())
    assert info.as_dict()["splits"] == {"train": 5, "validation": 2, "test": 1}


def test_instruct_extra_fields_listed_after_input_output(tmp_path):
    p = write_json(tmp_path / "d.json", {"train": [{"id": "1", "output": "b", "input": "a"}]})
    assert inspect_dataset(p).fields == ("input", "output", "id")


def test_chat_json_inspected_in_conventional_split_order(chat_dir):
    info = inspect_dataset(chat_dir)
    assert info.format == "chat_json" and info.kind == "chat"
    assert list(info.splits) == ["train", "test"]
    assert info.splits == {"train": 4, "test": 2}
    assert read_split(chat_dir, "chat_json", "test") == [chat(0), chat(1)]


def test_text_formats(tmp_path):
    txt = tmp_path / "corpus.txt"
    txt.write_text("first line\n\nsecond line\n", encoding="utf-8")
    assert detect_format(txt) == "text"
    assert inspect_dataset(txt).splits == {"train": 2}
    assert read_split(txt, None, "train") == [{"text": "first line"}, {"text": "second line"}]

    d = tmp_path / "text"
    d.mkdir()
    (d / "train.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    write_json(d / "validation.json", [{"text": "c"}])
    info = inspect_dataset(d)
    assert (info.format, info.splits) == ("text", {"train": 2, "validation": 1})
    # a folder of {"text"} .json files is detected as text, not chat
    d2 = tmp_path / "text2"
    write_json(d2 / "train.json", [{"text": "a"}])
    assert detect_format(d2) == "text"


def test_parquet_counts_from_metadata(tmp_path):
    require(importlib.util.find_spec("pyarrow") is not None, "pyarrow is not installed")
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "pq"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS), d / "train.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[:3]), d / "test.parquet")
    info = inspect_dataset(d)
    assert (info.format, info.kind, info.splits) == ("parquet", "instruct", {"train": 5, "test": 3})
    assert read_split(d, "parquet", "test") == ROWS[:3]


def test_parquet_without_known_columns_is_an_error(tmp_path):
    require(importlib.util.find_spec("pyarrow") is not None, "pyarrow is not installed")
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "pq"
    d.mkdir()
    pq.write_table(pa.Table.from_pylist([{"question": "q", "answer": "a"}]), d / "train.parquet")
    with pytest.raises(DataFormatError, match="question"):
        inspect_dataset(d)


def test_parquet_garbage_file(tmp_path):
    require(importlib.util.find_spec("pyarrow") is not None, "pyarrow is not installed")
    d = tmp_path / "pq"
    d.mkdir()
    (d / "train.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match="train.parquet: not a parquet file"):
        inspect_dataset(d)


def test_arrow_dataset_dict(tmp_path):
    require(importlib.util.find_spec("datasets") is not None, "datasets is not installed")
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                               "validation": datasets.Dataset.from_list(ROWS[:2])})
    dd.save_to_disk(str(tmp_path / "arrow"))
    info = inspect_dataset(tmp_path / "arrow")
    assert (info.format, info.kind) == ("arrow", "instruct")
    assert info.splits == {"train": 5, "validation": 2}
    assert info.fields == ("input", "output")
    assert read_split(tmp_path / "arrow", None, "validation") == ROWS[:2]

    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "single"))
    assert inspect_dataset(tmp_path / "single").splits == {"train": 5}


# --- errors -----------------------------------------------------------------------------------


def test_errors_are_cruijff_errors_with_invalid_exit_code():
    assert issubclass(DataFormatError, CruijffError)
    assert DataFormatError.exit_code == ExitCode.INVALID


def test_not_json_names_file_and_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"train": [\n  {"input": "a",}\n]}', encoding="utf-8")
    with pytest.raises(DataFormatError) as e:
        inspect_dataset(p)
    assert e.value.location.file == str(p.resolve()) and e.value.location.line == 2
    assert "not JSON" in str(e.value) and "bad.json:2" in str(e.value)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([{"input": "a", "output": "b"}], "top level is a list"),
        ("text", "top level is a string"),
        ({}, "no splits"),
        ({"train": {"input": "a"}}, "split 'train' is an object, not a list"),
        ({"train": [{"input": "a"}]}, r"train\[0\] is missing 'output'"),
        ({"train": [{"input": "a", "output": "b"}, {"output": "b"}]}, r"train\[1\] is missing 'input'"),
        ({"train": [{"input": "a", "output": 1}]}, r"train\[0\].output is a number, not a string"),
        ({"train": ["a"]}, r"train\[0\] is a string"),
    ],
)
def test_instruct_shape_errors(tmp_path, data, match):
    p = write_json(tmp_path / "d.json", data)
    with pytest.raises(DataFormatError, match=match) as e:
        inspect_dataset(p)
    assert "d.json" in str(e.value)


def test_mixed_formats_in_one_folder(tmp_path, chat_dir):
    (chat_dir / "validation.parquet").write_bytes(b"x")
    with pytest.raises(DataFormatError, match="mixed formats"):
        detect_format(chat_dir)
    with pytest.raises(DataFormatError, match="mixed formats"):
        inspect_dataset(chat_dir, "chat_json")


def test_split_file_missing(chat_dir):
    with pytest.raises(DataFormatError, match="split file missing: validation"):
        inspect_dataset(chat_dir, require_splits=("train", "validation"))
    with pytest.raises(DataFormatError, match="split file missing: 'validation'"):
        read_split(chat_dir, "chat_json", "validation")


def test_split_missing_in_instruct(instruct):
    with pytest.raises(DataFormatError, match="split file missing: 'dev'"):
        read_split(instruct, "instruct_json", "dev")


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({"input": "a", "output": "b"}, "has no 'messages'"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "human", "content": "x"}]}, "unknown role 'human'"),
        ({"messages": [{"role": "user"}]}, "needs 'role' and 'content'"),
        ({"messages": [{"role": "user", "content": 3}]}, "content is a number"),
    ],
)
def test_chat_row_errors(tmp_path, row, match):
    d = tmp_path / "chat"
    write_json(d / "train.json", [chat(0), row])
    with pytest.raises(DataFormatError, match=match) as e:
        inspect_dataset(d, "chat_json")
    assert "train.json: row 1" in str(e.value)


def test_wrong_shape_for_given_format(instruct, chat_dir):
    with pytest.raises(DataFormatError, match="folder of split files, not a file"):
        inspect_dataset(instruct, "chat_json")
    with pytest.raises(DataFormatError, match="is one .json file, but this is a folder"):
        inspect_dataset(chat_dir, "instruct_json")


def test_detection_errors(tmp_path):
    with pytest.raises(DataFormatError, match="not found"):
        detect_format(tmp_path / "missing.json")
    (tmp_path / "d.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as e:
        detect_format(tmp_path / "d.csv")
    assert "cruijff data convert" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="no split files"):
        detect_format(tmp_path / "empty")
    with pytest.raises(DataFormatError, match="unknown dataset format"):
        inspect_dataset(tmp_path / "d.csv", "yaml")


def test_formats_module_is_light():
    """The compiler inspects datasets at plan time: no pyarrow, torch or datasets import."""
    code = (
        "import sys, cruijff.data, cruijff.data.formats, cruijff.data.generate\n"
        "heavy = {'pyarrow', 'torch', 'datasets', 'transformers', 'english_words', 'numpy'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
