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


@pytest.fixture(scope="module")
def llama3_dirs(tmp_path_factory):
    from tests.chat_tokenizers import build_llama3_style

    root = tmp_path_factory.mktemp("llama3-style")
    return {"llama3": build_llama3_style(root / "with"), "plain": build_llama3_style(root / "plain", chat_template=False)}


@pytest.mark.parametrize("model", ["tiny", "llama3", "plain"])
@pytest.mark.parametrize("system", [None, "Answer."])
def test_batched_counts_equal_the_per_row_counts(tokenizer_dir, llama3_dirs, tmp_path, monkeypatch, model, system):
    """Issue 27.5: chunks of rows in one tokenizer call count every row as the per-row call does."""
    import random

    from cruijff.data import stats
    rnd = random.Random(0)
    words = ["alpha", "beta", "gamma", "delta", "Zeta", "theta!", "kappa 12"]
    say = lambda k: " ".join(rnd.choice(words) for _ in range(rnd.randint(1, k)))  # noqa: E731
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"train": [{"input": say(30), "output": say(10)} for _ in range(90)]}))
    folder = tokenizer_dir if model == "tiny" else llama3_dirs[model]
    tokenizer = stats.load_tokenizer(folder)
    count, _ = stats._counter(tokenizer)
    rows = json.loads(path.read_text())["train"]
    per_row = [count(*stats._messages(r, "Q: {input}", system)) for r in rows]
    assert list(stats._all_counts(rows, "Q: {input}", system, tokenizer, count)) == per_row
    monkeypatch.setattr(stats, "CHUNK", 7)  # chunks that end mid-dataset
    assert list(stats._all_counts(rows, "Q: {input}", system, tokenizer, count)) == per_row
    assert stats._batch_counter(tokenizer) is not None  # the batched way was the one measured


def test_chunks_shared_out_over_processes_count_as_one_process(tokenizer_dir, monkeypatch):
    """A big split's chunks are counted by a process per core (cruijff.cores): the same counts in
    the same order, and the progress bar, drawn by this process alone, reaches every row once."""
    from cruijff import cores
    from cruijff.data import stats

    rows = [{"input": "alpha " * (i % 17), "output": "beta gamma " * (i % 5)} for i in range(100)]
    tokenizer = stats.load_tokenizer(tokenizer_dir)
    count, _ = stats._counter(tokenizer)
    per_row = [count(*stats._messages(r, "Q: {input}", None)) for r in rows]
    monkeypatch.setattr(stats, "CHUNK", 7)
    monkeypatch.setattr(stats, "PARALLEL_FROM", 7)
    monkeypatch.setattr(cores, "workers", lambda: 2)
    forked = []
    monkeypatch.setattr(cores, "_fork", lambda work, share, real=cores._fork: forked.append(len(share)) or real(work, share))
    shown = []
    assert list(stats._all_counts(rows, "Q: {input}", None, tokenizer, count, shown.append)) == per_row
    assert forked == [len(range(0, 100, 7)) // 2], "the chunks were not shared out"
    assert sum(shown) == len(rows) and len(shown) > 2


@pytest.mark.parametrize("model", ["tiny", "llama3"])
def test_padded_contents_count_as_the_per_row_count(tokenizer_dir, llama3_dirs, tmp_path, model):
    """String-join renders (ChatML) keep contents as they are; Llama 3 trims them, so it renders per row."""
    from cruijff.data import stats

    rows = [{"input": " " * (i % 3) + "alpha beta" + "\n" * (i % 2), "output": "Zeta " * (i % 4)} for i in range(40)]
    tokenizer = stats.load_tokenizer(tokenizer_dir if model == "tiny" else llama3_dirs[model])
    count, _ = stats._counter(tokenizer)
    per_row = [count(*stats._messages(r, "Q: {input}", " Be brief. ")) for r in rows]
    assert list(stats._all_counts(rows, "Q: {input}", " Be brief. ", tokenizer, count)) == per_row


def test_a_difference_in_the_first_rows_counts_row_by_row(tokenizer_dir, monkeypatch):
    """The check can fail: a batched render that differs is caught on the first rows."""
    from cruijff.data import stats
    from cruijff.train import bulk

    rows = [{"input": "alpha " * i, "output": "beta"} for i in range(1, 50)]
    tokenizer = stats.load_tokenizer(tokenizer_dir)
    count, _ = stats._counter(tokenizer)
    calls = []

    def counted(*pair):
        calls.append(1)
        return count(*pair)
    per_row = [count(*stats._messages(r, None, None)) for r in rows]
    assert list(stats._all_counts(rows, None, None, tokenizer, counted)) == per_row
    assert len(calls) == stats.CHECKED  # batched
    call = bulk.ChatRenderer.__call__
    monkeypatch.setattr(bulk.ChatRenderer, "__call__", lambda self, m, g: call(self, m, g) + "x")
    calls.clear()
    assert list(stats._all_counts(rows, None, None, tokenizer, counted)) == per_row
    assert len(calls) == stats.CHECKED + len(rows)  # row by row
