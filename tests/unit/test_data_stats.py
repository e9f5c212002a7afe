"""`cruijff data stats`: token counts with a model's own tokenizer (a real BPE tokenizer built like
the tiny model's), percentiles by hand, rows over max_seq_len, and a readable error."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cruijff.cli import cli, main
from cruijff.data.stats import percentile, summarise, token_stats


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from cruijff.llm.tiny import build_tokenizer

    out = tmp_path_factory.mktemp("tok")
    build_tokenizer(out)
    return out


@pytest.fixture
def dataset(tmp_path):
    rows = [{"input": "word " * n, "output": "Word"} for n in (1, 2, 3, 4, 40)]
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"train": rows, "test": rows[:2]}))
    return path


def test_percentiles_nearest_rank():
    xs = list(range(1, 101))
    assert [percentile(xs, q) for q in (50, 90, 99)] == [50, 90, 99]
    assert percentile([7], 95) == 7
    s = summarise([4, 1, 3, 2])
    assert (s["min"], s["mean"], s["p50"], s["max"], s["sum"]) == (1, 2.5, 2, 4, 10)


def test_counts_match_the_tokenizer(tokenizer_dir, dataset):
    from transformers import AutoTokenizer

    from cruijff.prompting import build_messages

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    counted = []
    stats, method = token_stats(dataset, tokenizer_dir, template="W: {input}", max_seq_len=30,
                                progress=counted.append)
    assert method == "chat template"
    assert sum(counted) == sum(len(rows) for rows in json.loads(dataset.read_text()).values())  # a bar moves
    train = stats[0]
    rows = json.loads(dataset.read_text())["train"]
    totals = sorted(len(tok.apply_chat_template(build_messages(r["input"], template="W: {input}", system=None,
                                                               output=r["output"]), tokenize=True,
                                                return_dict=True)["input_ids"]) for r in rows)
    assert train.rows == 5 and train.total["sum"] == sum(totals) and train.total["max"] == totals[-1]
    assert train.total["p50"] == totals[2]
    assert train.over_max == sum(t > 30 for t in totals) == 1  # only the 40-word row
    assert train.answer["min"] > 0 and train.prompt["sum"] + train.answer["sum"] == train.total["sum"]


def test_cli_json_and_bad_model(tokenizer_dir, dataset, tmp_path, capsys):
    res = CliRunner().invoke(cli, ["data", "stats", str(dataset), "--model", str(tokenizer_dir),
                                   "--max-seq-len", "30", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [s["split"] for s in out["splits"]] == ["train", "test"] and out["splits"][0]["over_max"] == 1
    res = CliRunner().invoke(cli, ["data", "stats", str(dataset), "--model", str(tokenizer_dir)],
                             catch_exceptions=False)
    assert "p95" in res.output and "total" in res.output
    assert "tokenizing rows" in res.stderr  # progress on stderr (issue 23, item 9); --json shows none
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "stats", str(dataset), "--model", str(empty)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no Hugging Face tokenizer could be loaded" in err and "Traceback" not in err
