"""Converters round-trip generated data: row counts and contents come back equal."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cruijff.data.convert import (
    arrow_to_parquet,
    chat_to_instruct,
    chat_to_instruct_rows,
    convert,
    csv_to_instruct,
    instruct_to_chat,
    json_to_parquet,
    parse_split,
    split_rows,
    split_sizes,
    write_chat_json,
    write_instruct_json,
)
from cruijff.data.formats import DataFormatError, inspect_dataset, read_dataset, read_split
from tests.conftest import require

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def make_splits(n: int = 20) -> dict[str, list[dict]]:
    rows = [{"input": f"héllo {i} {{json}}", "output": f"Out {i}"} for i in range(n)]
    rows[3]["system"] = "row system"
    return {"train": rows[:14], "validation": rows[14:17], "test": rows[17:]}


@pytest.fixture
def instruct(tmp_path) -> Path:
    write_instruct_json(tmp_path / "data.json", make_splits())
    return tmp_path / "data.json"


def test_json_to_parquet_and_back(tmp_path, instruct):
    require(HAS_PYARROW, "pyarrow is not installed")
    info = json_to_parquet(instruct, tmp_path / "pq")
    assert info.format == "parquet" and info.splits == {"train": 14, "validation": 3, "test": 3}
    back = convert(tmp_path / "pq", tmp_path / "back.json", to="instruct_json").info
    assert back.splits == info.splits
    assert read_dataset(back.path)[1] == make_splits()
    # identical rows -> identical bytes
    assert (tmp_path / "back.json").read_bytes() == instruct.read_bytes()


def test_arrow_to_parquet(tmp_path):
    require(importlib.util.find_spec("datasets") is not None, "datasets is not installed")
    import datasets

    splits = {s: [{"input": r["input"], "output": r["output"]} for r in rows]
              for s, rows in make_splits().items()}
    datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in splits.items()}).save_to_disk(
        str(tmp_path / "arrow"))
    info = arrow_to_parquet(tmp_path / "arrow", tmp_path / "pq")
    assert info.splits == {"train": 14, "validation": 3, "test": 3}
    assert {s: read_split(info.path, "parquet", s) for s in info.splits} == splits


def test_instruct_to_chat_and_back(tmp_path, instruct):
    info = instruct_to_chat(instruct, tmp_path / "chat", system="global system")
    assert info.format == "chat_json" and info.splits == {"train": 14, "validation": 3, "test": 3}
    train = read_split(info.path, "chat_json", "train")
    assert train[0]["messages"] == [
        {"role": "system", "content": "global system"},
        {"role": "user", "content": "héllo 0 {json}"},
        {"role": "assistant", "content": "Out 0"},
    ]
    assert train[3]["messages"][0] == {"role": "system", "content": "row system"}  # the row's own wins

    result = chat_to_instruct(tmp_path / "chat", tmp_path / "back.json")
    assert result.dropped_turns == 0
    back = read_dataset(tmp_path / "back.json")[1]
    expected = {s: [{**r, "system": r.get("system", "global system")} for r in rows]
                for s, rows in make_splits().items()}
    assert back == expected


def test_instruct_chat_round_trip_without_system_is_exact(tmp_path):
    splits = {"train": [{"input": f"i{i}", "output": f"o{i}"} for i in range(7)]}
    write_instruct_json(tmp_path / "a.json", splits)
    instruct_to_chat(tmp_path / "a.json", tmp_path / "chat")
    chat_to_instruct(tmp_path / "chat", tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_template_applied_with_build_messages(tmp_path, instruct):
    info = instruct_to_chat(instruct, tmp_path / "chat", template="Q: {input}\nA:")
    user = read_split(info.path, "chat_json", "test")[0]["messages"][0]
    assert user == {"role": "user", "content": "Q: héllo 17 {json}\nA:"}


def test_chat_to_instruct_takes_last_turns():
    rows = [{"messages": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "second answer"},
    ]}]
    out, dropped = chat_to_instruct_rows(rows)
    assert out == [{"input": "second", "output": "second answer", "system": "sys"}]
    assert dropped == 2
    with pytest.raises(DataFormatError, match="row 0: needs a user turn followed by an assistant"):
        chat_to_instruct_rows([{"messages": [{"role": "assistant", "content": "x"},
                                             {"role": "user", "content": "y"}]}])


def test_chat_to_parquet_round_trip(tmp_path):
    require(HAS_PYARROW, "pyarrow is not installed")
    splits = {"train": [{"messages": [{"role": "user", "content": f"q{i}"},
                                      {"role": "assistant", "content": f"a{i}"}]} for i in range(4)]}
    write_chat_json(tmp_path / "chat", splits)
    info = convert(tmp_path / "chat", tmp_path / "pq", to="parquet").info
    assert info.kind == "chat"
    back = convert(tmp_path / "pq", tmp_path / "chat2", to="chat_json").info
    assert read_dataset(back.path)[1] == splits


def test_csv_to_instruct(tmp_path):
    src = tmp_path / "d.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["question", "context", "label"])
        for i in range(50):
            w.writerow([f"q{i}", f"c{i}", str(i % 2)])
    info = csv_to_instruct(src, tmp_path / "a.json", input_columns=["question"], output_column="label",
                           split="80,10,10", seed=3)
    assert info.splits == {"train": 40, "validation": 5, "test": 5}
    data = read_dataset(info.path)[1]
    rows = [r for split in data.values() for r in split]
    assert sorted(r["input"] for r in rows) == sorted(f"q{i}" for i in range(50))
    assert all(r["output"] == str(int(r["input"][1:]) % 2) for r in rows)
    # same seed -> same bytes; another seed -> another order
    csv_to_instruct(src, tmp_path / "b.json", input_columns=["question"], output_column="label", seed=3)
    csv_to_instruct(src, tmp_path / "c.json", input_columns=["question"], output_column="label", seed=4)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()
    # several input columns become `column: value` lines
    multi = csv_to_instruct(src, tmp_path / "m.json", input_columns=["question", "context"],
                            output_column="label", split="100")
    assert multi.splits == {"train": 50}
    assert any(r["input"] == "question: q7\ncontext: c7" for r in read_split(multi.path, None, "train"))
    with pytest.raises(DataFormatError, match="no column .input., .answer."):
        csv_to_instruct(src, tmp_path / "x.json", output_column="answer")


def test_refuses_to_clobber_unless_forced(tmp_path, instruct):
    instruct_to_chat(instruct, tmp_path / "chat")
    with pytest.raises(DataFormatError, match="already exists"):
        instruct_to_chat(instruct, tmp_path / "chat")
    (tmp_path / "chat" / "stale.json").write_text("[]", encoding="utf-8")
    instruct_to_chat(instruct, tmp_path / "chat", overwrite=True)
    assert not (tmp_path / "chat" / "stale.json").exists()  # replaced as a whole
    (tmp_path / "chat" / "notes.md").write_text("mine", encoding="utf-8")
    with pytest.raises(DataFormatError, match="other than dataset splits"):
        instruct_to_chat(instruct, tmp_path / "chat", overwrite=True)
    assert not list(tmp_path.glob(".chat.*"))  # no temporary left behind


def test_unsupported_conversions(tmp_path, instruct):
    with pytest.raises(DataFormatError, match="cannot convert to 'arrow'"):
        convert(instruct, tmp_path / "x", to="arrow")
    (tmp_path / "t.txt").write_text("a\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="text rows"):
        convert(tmp_path / "t.txt", tmp_path / "x.json", to="instruct_json")


def test_parse_split():
    assert parse_split("80,10,10") == (80, 10, 10)
    assert parse_split([90, 10]) == (90, 10)
    assert parse_split("100") == (100,)
    for bad in ("80,10", "a,b", "50,20,20,10", "-10,110", [True, 99]):
        with pytest.raises(DataFormatError):
            parse_split(bad)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 5000), a=st.integers(0, 100), b=st.integers(0, 100))
def test_split_sizes_always_sum_to_n(n, a, b):
    if a + b > 100:
        a, b = b % 50, a % 50
    pct = (a, b, 100 - a - b)
    sizes = split_sizes(n, pct)
    assert sum(sizes.values()) == n
    assert set(sizes) == {name for name, p in zip(("train", "validation", "test"), pct) if p}
    for name, p in zip(("train", "validation", "test"), pct):
        if p:
            assert abs(sizes[name] - n * p / 100) <= 1


def test_split_rows_is_a_seeded_partition():
    rows = list(range(101))
    parts = split_rows(rows, (80, 10, 10), seed=7)
    assert sorted(x for p in parts.values() for x in p) == rows
    assert split_rows(rows, (80, 10, 10), seed=7) == parts
    assert split_rows(rows, (80, 10, 10), seed=8) != parts


def test_written_json_is_stable_utf8(tmp_path):
    write_instruct_json(tmp_path / "a.json", {"train": [{"output": "B", "input": "é"}]})
    text = (tmp_path / "a.json").read_text(encoding="utf-8")
    assert json.loads(text) == {"train": [{"input": "é", "output": "B"}]}
    assert "é" in text and text.endswith("\n")
    assert inspect_dataset(tmp_path / "a.json").splits == {"train": 1}
