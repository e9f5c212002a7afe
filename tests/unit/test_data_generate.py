"""Generators: deterministic for a seed (identical bytes), right shapes, and the CLI/manifest mapping."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from cruijff.cli import cli, main
from cruijff.data.formats import DataFormatError, inspect_dataset, read_dataset, read_split
from cruijff.data.generate import (
    GENERATORS,
    check_options,
    cli_args,
    generate,
    output_format,
    planned_info,
)
from cruijff.data.generate.twins import (
    simulate_twins,
    trait_columns,
    twin_csv_text,
    twin_examples,
    zygosity_label,
)
from tests.conftest import require

HAS_WORDS = importlib.util.find_spec("english_words") is not None


def run_cli(args: list[str]):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


# --- capitalization ---------------------------------------------------------------------------


def test_capitalization_instruct(tmp_path):
    require(HAS_WORDS, "english-words is not installed")
    info = generate("capitalization", tmp_path / "cap.json", letters=5, count=200, seed=1)
    assert info.format == "instruct_json"
    assert info.splits == {"train": 160, "validation": 20, "test": 20}
    rows = [r for split in read_dataset(info.path)[1].values() for r in split]
    assert len({r["input"] for r in rows}) == 200  # distinct words
    for r in rows:
        assert len(r["input"]) == 5 and r["input"].isalpha() and r["input"].islower()
        assert r["output"] == r["input"][0].upper() + r["input"][1:]
        assert set(r) == {"input", "output"}


def test_capitalization_same_seed_same_bytes(tmp_path):
    require(HAS_WORDS, "english-words is not installed")
    generate("capitalization", tmp_path / "a.json", count=50, seed=3)
    generate("capitalization", tmp_path / "b.json", count=50, seed=3)
    generate("capitalization", tmp_path / "c.json", count=50, seed=4)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()


def test_capitalization_chat(tmp_path):
    require(HAS_WORDS, "english-words is not installed")
    info = generate("capitalization", tmp_path / "chat", count=30, letters=4, format="chat_json",
                    split="90,10", seed=0)
    assert (info.format, info.splits) == ("chat_json", {"train": 27, "validation": 3})
    msgs = read_split(info.path, "chat_json", "train")[0]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[1]["content"] == msgs[0]["content"].capitalize() and len(msgs[0]["content"]) == 4


def test_capitalization_too_many_words(tmp_path):
    require(HAS_WORDS, "english-words is not installed")
    with pytest.raises(DataFormatError, match="only"):
        generate("capitalization", tmp_path / "x.json", letters=1, count=1000)


# --- twins ------------------------------------------------------------------------------------


def test_twins_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        generate("twins", tmp_path / f"{name}.json", pairs=60, traits=2, seed=5, csv=str(tmp_path / f"{name}.csv"))
    generate("twins", tmp_path / "c.json", pairs=60, traits=2, seed=6)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()


def test_twins_csv_shape(tmp_path):
    info = generate("twins", tmp_path / "t.json", pairs=100, traits=10, seed=0, csv=str(tmp_path / "t.csv"))
    header = (tmp_path / "t.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:4] == ["pair_id", "zygosity", "height.1", "height.2"]
    assert len(header) == 2 + 2 * 10 and "trait_10.2" in header
    assert trait_columns(header)[:2] == ["height", "weight"]
    assert info.splits == {"train": 80, "validation": 10, "test": 10}
    row = read_split(info.path, None, "train")[0]
    lines = row["input"].split("\n")
    assert len(lines) == 10 and lines[0].startswith("height: ")
    assert lines[0].count(",") == 1 and row["output"] in ("0", "1")


def test_twins_monozygotic_pairs_are_more_alike():
    rows = simulate_twins(pairs=2000, traits=1, seed=0)
    mz = [r for r in rows if r["zygosity"] == "MZ"]
    dz = [r for r in rows if r["zygosity"] == "DZ"]
    assert len(mz) == len(dz) == 1000

    def corr(group):
        return statistics.correlation([float(r["height.1"]) for r in group], [float(r["height.2"]) for r in group])

    # expected h2 + c2 = 0.7 (MZ) and h2/2 + c2 = 0.4 (DZ)
    assert abs(corr(mz) - 0.7) < 0.06 and abs(corr(dz) - 0.4) < 0.08


def test_twin_examples_options():
    rows = [{"pair_id": "1", "zygosity": "MZ", "height.1": "1.72", "height.2": "1.70",
             "weight.1": "70.5", "weight.2": "72"},
            {"pair_id": "2", "zygosity": "dizygotic", "height.1": "1.60", "height.2": "NA",
             "weight.1": "60", "weight.2": "66.25"}]
    plain = twin_examples(rows)
    assert plain[0] == {"input": "height: 1.72, 1.70\nweight: 70.5, 72", "output": "1"}
    assert plain[1]["output"] == "0"
    diff = twin_examples(rows, absolute_difference=True)
    assert diff[0]["input"] == "height: 0.02\nweight: 1.5"
    assert diff[1]["input"] == "height: NA\nweight: 6.25"
    truth = twin_examples(rows, add_truth=True)
    assert truth[0]["input"].endswith("\ntruth: 1") and truth[1]["input"].endswith("\ntruth: 0")


def test_zygosity_codes():
    assert [zygosity_label(v, "x") for v in ("MZ", "mzf", "Monozygotic", "1")] == ["1"] * 4
    assert [zygosity_label(v, "x") for v in ("DZ", "DZM", "DOS", "dizygotic", "0")] == ["0"] * 5
    with pytest.raises(DataFormatError, match="x: zygosity 'twin'"):
        zygosity_label("twin", "x")


def test_twins_from_csv(tmp_path):
    csv_path = tmp_path / "real.csv"
    csv_path.write_text(twin_csv_text(simulate_twins(pairs=20, traits=2, seed=9)), encoding="utf-8")
    info = generate("twins", tmp_path / "t.json", from_csv=str(csv_path), split="50,50", seed=1)
    assert info.splits == {"train": 10, "validation": 10}
    assert planned_info("twins", tmp_path / "t.json", {"from_csv": str(csv_path), "split": "50,50"}).splits == info.splits
    (tmp_path / "bad.csv").write_text("pair_id,height.1,height.2\n1,1,2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="no 'zygosity' column"):
        generate("twins", tmp_path / "u.json", from_csv=str(tmp_path / "bad.csv"))


def test_twins_bad_parameters(tmp_path):
    with pytest.raises(DataFormatError, match="sum to at most 1"):
        generate("twins", tmp_path / "t.json", heritability=0.8, shared_environment=0.3)
    with pytest.raises(DataFormatError, match="sum to 100"):
        generate("twins", tmp_path / "t.json", split="80,10")


# --- the manifest -> command line mapping -----------------------------------------------------


def test_cli_args_mapping():
    args = cli_args("twins", "/data/twins.json",
                    {"pairs": 500, "seed": 1, "add_truth": True, "absolute_difference": False,
                     "split": [80, 10, 10], "csv": None})
    assert args == ["twins", "/data/twins.json", "--pairs", "500", "--add-truth", "--split", "80,10,10",
                    "--seed", "1"]
    assert cli_args("capitalization", "o", {"letters": 4, "format": "chat_json"}) == [
        "capitalization", "o", "--letters", "4", "--format", "chat_json"]
    # the manifest's whole generate block may be passed: a matching `kind` key is ignored
    assert cli_args("twins", "o", {"kind": "twins", "pairs": 3}) == ["twins", "o", "--pairs", "3"]
    assert check_options("twins", {"kind": "capitalization"}) != []


def test_check_options_reports_every_problem():
    problems = check_options("twins", {"pairs": "many", "add_truth": "yes", "colour": 1})
    assert len(problems) == 3
    assert any("unknown option 'colour'" in p for p in problems)
    assert check_options("capitalization", {"format": "parquet"}) == [
        "capitalization.format: 'parquet' is not one of instruct_json, chat_json"]
    assert check_options("twins", {"split": "70,70"})[0].startswith("twins.split:")
    assert check_options("sudoku", {}) == [f"unknown generator 'sudoku' (generators: {', '.join(GENERATORS)})"]
    with pytest.raises(DataFormatError):
        cli_args("twins", "o", {"pairs": "many"})


def test_every_option_has_a_cli_flag():
    for kind, options in GENERATORS.items():
        command = cli.get_command(None, "data").commands["generate"].commands[kind]
        flags = {f for p in command.params for f in getattr(p, "opts", [])}
        assert {o.flag for o in options} <= flags


def test_cli_args_run_through_the_cli_match_planned_info(tmp_path):
    options = {"pairs": 40, "traits": 2, "seed": 2, "absolute_difference": True, "add_truth": True,
               "split": "70,20,10"}
    out = tmp_path / "twins.json"
    run_cli(["data", "generate", *cli_args("twins", out, options)])
    assert inspect_dataset(out) == planned_info("twins", out, options)
    generate("twins", tmp_path / "direct.json", **options)
    assert out.read_bytes() == (tmp_path / "direct.json").read_bytes()  # CLI and API agree
    first = read_split(out, None, "train")[0]["input"]
    assert first.endswith(f"truth: {read_split(out, None, 'train')[0]['output']}")
    assert output_format("twins", options) == "instruct_json"


def test_planned_info_capitalization(tmp_path):
    require(HAS_WORDS, "english-words is not installed")
    options = {"count": 25, "format": "chat_json", "letters": 6}
    out = tmp_path / "cap"
    run_cli(["data", "generate", *cli_args("capitalization", out, options)])
    assert inspect_dataset(out) == planned_info("capitalization", out, options)
    assert output_format("capitalization", options) == "chat_json"


def test_cli_inspect_and_convert(tmp_path):
    generate("twins", tmp_path / "t.json", pairs=10)
    result = run_cli(["data", "inspect", str(tmp_path / "t.json"), "--json"])
    assert json.loads(result.output)["dataset"]["splits"] == {"train": 8, "validation": 1, "test": 1}
    text = run_cli(["data", "inspect", str(tmp_path / "t.json")]).output
    assert "instruct_json" in text and "validation" in text and "input, output" in text
    run_cli(["data", "convert", str(tmp_path / "t.json"), str(tmp_path / "chat"), "--to", "chat_json",
             "--template", "Traits:\n{input}\nMZ?"])
    first = read_split(tmp_path / "chat", None, "train")[0]["messages"][0]["content"]
    assert first.startswith("Traits:\nheight: ")


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": [{"input": "a"}]}', encoding="utf-8")
    with pytest.raises(SystemExit) as e:
        main(["data", "inspect", str(bad)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing 'output'" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(["data", "generate", "twins", str(tmp_path / "t.json"), "--split", "1,2"])
    assert e.value.code == 2 and "sum to 100" in capsys.readouterr().err


def test_generated_files_land_where_asked(tmp_path):
    out = tmp_path / "nested" / "deeper" / "t.json"
    generate("twins", out, pairs=5)
    assert out.is_file() and Path(inspect_dataset(out).path) == out.resolve()
    generate("twins", out, pairs=6)  # generators overwrite: a rerun of a prepare job succeeds
    assert sum(inspect_dataset(out).splits.values()) == 6
