"""One dataset reader (issue 15): plan, training and evaluation agree on every layout.

Before, three readers disagreed on the same files: a .txt in text format planned but failed in
training; a JSON-list file failed plan but trained; a train.jsonl in a chat_json folder failed
plan and eval but trained; a parquet folder with a stray train.json failed plan, and training read
the JSON while eval read the parquet; the `tool` role passed plan and failed training. Each case
below goes through the plan-time check (inspect_dataset), training (prompted_dataset) and
evaluation (cruijff.tasks) and must get the same rows or the same error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cruijff.data.formats import MANIFEST_FORMATS, ROLES, DataFormatError, inspect_dataset, read_split
from tests.unit.test_train_datasets import build, tok  # noqa: F401  (the training tokenizer fixture)

REPO = Path(__file__).resolve().parents[2]


def plan_check(path, fmt, split):
    return inspect_dataset(path, fmt, require_splits=[split])


def train(tok, path, fmt, split):  # noqa: F811
    return build(tok, path=str(path), format=fmt, split=split)


def evaluate(path, fmt, split):
    from cruijff.tasks import read_split as eval_read

    return eval_read(path, fmt, split)


def all_fail(tok, path, fmt, split, message, *, plan=True):  # noqa: F811
    stages = [lambda: train(tok, path, fmt, split), lambda: evaluate(path, fmt, split)]
    for stage in ([lambda: plan_check(path, fmt, split)] if plan else []) + stages:
        with pytest.raises(DataFormatError, match=message):
            stage()


def test_a_txt_file_in_text_format_plans_trains_and_reads_the_same(tok, tmp_path):  # noqa: F811
    f = tmp_path / "corpus.txt"
    f.write_text("the cat sat\n\nthe dog ran\n")
    assert plan_check(f, "text", "train").splits == {"train": 2}
    assert len(train(tok, f, "text", "train")) == 2
    assert evaluate(f, "text", "train") == [{"text": "the cat sat"}, {"text": "the dog ran"}]


def test_a_json_list_file_fails_everywhere(tok, tmp_path):  # noqa: F811
    f = tmp_path / "rows.json"
    f.write_text(json.dumps([{"input": "a", "output": "A"}]))
    all_fail(tok, f, "instruct_json", "train", "top level is a list")


def test_a_jsonl_split_in_a_chat_json_folder_fails_everywhere(tok, tmp_path):  # noqa: F811
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]}
    (tmp_path / "train.jsonl").write_text(json.dumps(chat) + "\n")
    all_fail(tok, tmp_path, "chat_json", "train", "no split files for chat_json")


def test_a_parquet_folder_with_a_stray_json_fails_everywhere(tok, tmp_path):  # noqa: F811
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"input": ["a"], "output": ["A"]}), tmp_path / "train.parquet")
    (tmp_path / "train.json").write_text(json.dumps([{"input": "b", "output": "B"}]))
    all_fail(tok, tmp_path, "parquet", "train", "mixed formats in one folder")


@pytest.mark.parametrize("layout", ["chat_json", "parquet"])
def test_the_tool_role_fails_everywhere(tok, tmp_path, layout):  # noqa: F811
    messages = [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"},
                {"role": "assistant", "content": "Hello"}]
    if layout == "chat_json":
        (tmp_path / "train.json").write_text(json.dumps([{"messages": messages}]))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"messages": [messages]}), tmp_path / "train.parquet")
    # parquet is inspected from its metadata at plan time (never reading gigabytes): its rows are
    # checked where they are read, by the same code in training and evaluation
    all_fail(tok, tmp_path, layout, "train", "unknown role 'tool'", plan=layout == "chat_json")


def test_a_good_chat_dataset_reads_the_same_rows_in_plan_training_and_eval(tok, tmp_path):  # noqa: F811
    chats = [{"messages": [{"role": "user", "content": f"hi {i}"}, {"role": "assistant", "content": "Hello"}]}
             for i in range(3)]
    (tmp_path / "train.json").write_text(json.dumps(chats))
    assert plan_check(tmp_path, "chat_json", "train").splits == {"train": 3}
    assert len(train(tok, tmp_path, "chat_json", "train")) == 3
    assert evaluate(tmp_path, "chat_json", "train") == read_split(tmp_path, "chat_json", "train") == chats


def test_one_list_of_formats_equals_the_schema_enum():
    schema = json.loads((REPO / "schemas" / "experiment.schema.json").read_text())
    enum = schema["$defs"]["dataset"]["properties"]["format"]["enum"]
    assert list(MANIFEST_FORMATS) == enum
    from cruijff.tasks import FORMATS as eval_formats
    from cruijff.train.datasets import FORMATS as train_formats

    assert eval_formats is MANIFEST_FORMATS and train_formats is MANIFEST_FORMATS


def test_eval_knows_every_role_the_reader_accepts():
    """Every role the reader lets through becomes an inspect chat message."""
    from cruijff.tasks._dataset import load_samples  # noqa: F401  (the mapping lives in load_samples)
    import inspect as pyinspect

    from cruijff.tasks import _dataset

    source = pyinspect.getsource(_dataset.load_samples)
    assert all(f'"{role}"' in source for role in ROLES)


def test_no_format_list_outside_cruijff_data():
    """A tuple or list literal naming two formats is a copy of the list; only cruijff/data holds one."""
    import ast

    found = []
    for f in (REPO / "cruijff").rglob("*.py"):
        if "data" in f.relative_to(REPO / "cruijff").parts[:1]:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.Tuple, ast.List)):
                names = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if len(names & set(MANIFEST_FORMATS)) >= 2:
                    found.append(f"{f.relative_to(REPO)}:{node.lineno}")
    assert found == [], found
