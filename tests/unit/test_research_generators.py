"""The research-kit generators: tabular-to-text with perturbations, and model organisms.

Deterministic for a seed (identical bytes), every template/perturbation/rule pinned on hand cases,
and the Bayes-optimal accuracies checked by simulation.
"""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from cruijff.cli import cli
from cruijff.data.formats import DataFormatError, inspect_dataset, read_dataset
from cruijff.data.generate import check_options, cli_args, generate, planned_info
from cruijff.data.generate import organisms as org
from cruijff.data.generate import tabular as tab

SCHEMA = {
    "target": "y", "subject": "The person",
    "columns": [
        {"name": "age", "type": "number", "label": "age", "unit": "years old", "clause": "is {value}",
         "short": "ag", "short_unit": "y/o", "synonyms": ["years of age"]},
        {"name": "job", "type": "category", "label": "occupation", "clause": "works as a {value}",
         "short": "occ", "values": {"rn": "nurse"}, "short_values": {"rn": "RN"},
         "synonyms": {"rn": ["caregiver"]}},
        {"name": "y", "type": "category", "values": {"hi": "1", "lo": "0"}},
    ],
}
RECORD = {"age": "42", "job": "rn", "y": "hi"}


def _text(template="dictionary", features=("age", "job"), **options):
    return tab.record_text(RECORD, SCHEMA, list(features), template=template, index=0, options=options)


def _rows(path):
    return [r for rows in read_dataset(path)[1].values() for r in rows]


# ---- tabular: templates and perturbations on a hand record ------------------------------------------

def test_templates():
    assert _text() == "age: 42 years old, occupation: nurse"
    assert _text("narrative") == "The person is 42 years old and works as a nurse."
    assert tab.target_text(RECORD, SCHEMA, "y") == "1"


def test_synonyms_and_shorthand():
    assert _text(synonyms_seed=0) == "age: 42 years of age, occupation: caregiver"
    assert _text(shorthand_seed=0) == "ag: 42 y/o, occ: RN"
    assert _text("narrative", shorthand_seed=0) == "The person is 42 y/o and works as a RN."
    assert _text(shorthand_seed=0, shorthand_rate=0.0) == _text()  # rate 0: nothing short


def test_irrelevant_clauses_are_added():
    text = _text(irrelevant_seed=5, irrelevant_clauses=3)
    added = [f"{label}: {value}" for label, value, _ in tab.IRRELEVANT if f"{label}: {value}" in text]
    assert len(added) == 3 and "age: 42 years old" in text and "occupation: nurse" in text
    narrative = _text("narrative", irrelevant_seed=5, irrelevant_clauses=1)
    assert sum(clause in narrative for _, _, clause in tab.IRRELEVANT) == 1


def test_dataset_perturbations(tmp_path):
    plain = _rows(generate("tabular", tmp_path / "plain.json", rows=60, seed=3).path)
    labels = ["age", "sex", "education", "occupation", "hours per week", "region"]

    def order(text):
        return [part.split(":")[0] for part in text.split(", ")]

    assert all(order(r["input"]) == labels for r in plain)
    reordered = _rows(generate("tabular", tmp_path / "r.json", rows=60, seed=3, reorder_seed=1).path)
    orders = {tuple(order(r["input"])) for r in reordered}
    assert len(orders) == 1 and sorted(next(iter(orders))) == sorted(labels) and list(next(iter(orders))) != labels
    shuffled = _rows(generate("tabular", tmp_path / "s.json", rows=60, seed=3, shuffle_seed=1).path)
    assert len({tuple(order(r["input"])) for r in shuffled}) > 10
    synonyms = _rows(generate("tabular", tmp_path / "y.json", rows=60, seed=3, synonyms_seed=1).path)
    assert not any("sex: female" in r["input"] or "sex: male" in r["input"] for r in synonyms)
    # every perturbation keeps the rows, their order, targets and raw features
    for rows in (reordered, shuffled, synonyms):
        assert [(r["output"], r["meta"]) for r in rows] == [(r["output"], r["meta"]) for r in plain]
        assert [r["input"] for r in rows] != [r["input"] for r in plain]


def test_perturbations_draw_from_their_own_streams():
    """Turning synonyms on does not change the per-record shuffle (each has its own stream)."""
    a = _text(shuffle_seed=2)
    b = _text(shuffle_seed=2, synonyms_seed=9)
    assert [p.split(":")[0] for p in a.split(", ")] == [p.split(":")[0] for p in b.split(", ")]


def test_tabular_same_seed_same_bytes_and_metadata(tmp_path):
    kw = dict(rows=40, template="narrative", shuffle_seed=1, synonyms_seed=2, shorthand_seed=3,
              shorthand_rate=0.5, irrelevant_seed=4)
    generate("tabular", tmp_path / "a.json", seed=7, **kw)
    generate("tabular", tmp_path / "b.json", seed=7, **kw)
    generate("tabular", tmp_path / "c.json", seed=7, **{**kw, "synonyms_seed": 5})
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert (tmp_path / "a.meta.json").read_bytes() == (tmp_path / "b.meta.json").read_bytes()
    assert (tmp_path / "a.json").read_bytes() != (tmp_path / "c.json").read_bytes()
    ma = json.loads((tmp_path / "a.meta.json").read_text())
    mc = json.loads((tmp_path / "c.meta.json").read_text())
    assert ma["perturbations"] == {"shuffle": 1, "synonyms": 2, "shorthand": 3, "irrelevant": 4}
    assert ma["config_hash"] == tab.config_hash(ma["config"]) != mc["config_hash"]
    assert ma["config"]["template"] == "narrative" and ma["config"]["shorthand_rate"] == 0.5


def test_tabular_from_csv_and_parquet_with_yaml_schema(tmp_path):
    (tmp_path / "t.csv").write_text("age,job,y\n42,rn,hi\n30,rn,lo\n", encoding="utf-8")
    (tmp_path / "s.yaml").write_text(json.dumps(SCHEMA), encoding="utf-8")  # JSON is YAML
    info = generate("tabular", tmp_path / "o.json", table=str(tmp_path / "t.csv"), columns=str(tmp_path / "s.yaml"),
                    split="50,50")
    rows = _rows(info.path)
    assert sorted((r["input"], r["output"]) for r in rows) == [
        ("age: 30 years old, occupation: nurse", "0"), ("age: 42 years old, occupation: nurse", "1")]
    assert rows[0]["meta"].keys() == {"age", "job"}
    meta = json.loads((tmp_path / "o.meta.json").read_text())
    assert meta["config"]["table_sha256"] == tab.file_sha256(tmp_path / "t.csv")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([RECORD]), tmp_path / "t.parquet")
    one = generate("tabular", tmp_path / "p.json", table=str(tmp_path / "t.parquet"),
                   columns=str(tmp_path / "s.yaml"), split="100")
    assert _rows(one.path)[0]["input"] == "age: 42 years old, occupation: nurse"
    assert planned_info("tabular", tmp_path / "p.json", {"table": str(tmp_path / "t.parquet"), "split": "100"}).splits == {"train": 1}


def test_tabular_bad_input(tmp_path):
    (tmp_path / "t.csv").write_text("age\n1\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="lacks the schema's columns"):
        generate("tabular", tmp_path / "o.json", table=str(tmp_path / "t.csv"))
    with pytest.raises(DataFormatError, match="target 'nope'"):
        generate("tabular", tmp_path / "o.json", rows=5, target="nope")
    (tmp_path / "bad.json").write_text('{"columns": []}', encoding="utf-8")
    with pytest.raises(DataFormatError, match="non-empty 'columns'"):
        generate("tabular", tmp_path / "o.json", columns=str(tmp_path / "bad.json"))
    assert check_options("tabular", {"style": "poem"}) == [
        "tabular.style: 'poem' is not one of dictionary, narrative"]


def test_tabular_style_is_not_called_template():
    """--template is a prompt template everywhere; the tabular record style is --style (issue 23, item 11).
    A manifest written with the old key `template:` plans the same data."""
    assert cli_args("tabular", "o.json", {"style": "narrative"}) == ["tabular", "o.json", "--style", "narrative"]
    assert cli_args("tabular", "o.json", {"kind": "tabular", "template": "narrative"}) == cli_args(
        "tabular", "o.json", {"style": "narrative"})
    assert check_options("tabular", {"template": "poem"}) == ["tabular.style: 'poem' is not one of dictionary, narrative"]
    usage = CliRunner().invoke(cli, ["data", "generate", "tabular", "--help"]).output
    assert "--style" in usage and "--template" not in usage


def test_census_bayes_accuracy_by_simulation():
    """The recorded Bayes accuracy is what the Bayes rule scores on freshly drawn labels."""
    rows = tab.census_rows(4000, seed=11)
    expected = tab.census_bayes_accuracy(rows)
    rng = random.Random(0)
    hits = 0
    for r in rows:
        p = tab.census_probability(r)
        y = rng.random() < p
        hits += (p >= 0.5) == y
    assert abs(hits / len(rows) - expected) < 0.02
    assert 0.65 < expected < 0.9  # informative but not trivial
    # and the labels in the table follow the same rule
    table_hits = sum((tab.census_probability(r) >= 0.5) == (r["income"] == ">50K") for r in rows)
    assert abs(table_hits / len(rows) - expected) < 0.02


def test_census_table_is_deterministic():
    assert tab.census_rows(50, 1) == tab.census_rows(50, 1) != tab.census_rows(50, 2)


# ---- model organisms -----------------------------------------------------------------------------

def test_rules_on_hand_sequences():
    kw = dict(alphabet="01")
    assert org.label(list("0110"), rule="parity", **kw) == "0"
    assert org.label(list("0111"), rule="parity", **kw) == "1"
    assert org.label(list("0111"), rule="majority", **kw) == "1"
    assert org.label(list("0011"), rule="majority", **kw) == "0"  # tie: earliest in the alphabet
    assert org.label(list("cab"), rule="first", alphabet="abc") == "c"
    assert org.label(list("cab"), rule="majority", alphabet="abc") == "a"
    assert org.label(list("0000"), rule="constant", constant="7", **kw) == "7"
    # weighted: values 0,1,2 ("abc"), weights 2,-1 cycled: 2*2 - 1*0 + 2*1 = 6
    assert org.label(list("cab"), rule="weighted", alphabet="abc", weights=[2, -1], threshold=5.9) == "1"
    assert org.label(list("cab"), rule="weighted", alphabet="abc", weights=[2, -1], threshold=6) == "0"
    assert org.default_threshold("01", 8, [1.0]) == 4.0
    # parity over digits: the sum of the values
    assert org.label(list("23"), rule="parity", alphabet="0123") == "1"


def test_coin_is_deterministic_per_sequence_and_seed():
    a = [org.label(list(s), rule="coin", alphabet="01", p=0.5, seed=1) for s in ("0101", "1100", "0101")]
    assert a[0] == a[2]
    assert org.coin_value("0101", 1) == org.coin_value("0101", 1) != org.coin_value("0101", 2)


@pytest.mark.parametrize("rule", org.RULES)
def test_every_rule_generates_with_ood_split_and_bayes(tmp_path, rule):
    alphabet = "abc" if rule == "first" else "01"
    info = generate("organisms", tmp_path / "o.json", rule=rule, alphabet=alphabet, length=5, count=50,
                    ood_count=20, seed=2)
    assert info.splits == {"train": 40, "validation": 5, "test": 5, "test_ood": 20}
    assert info == planned_info("organisms", tmp_path / "o.json",
                                {"rule": rule, "alphabet": alphabet, "length": 5, "count": 50, "ood_count": 20})
    data = read_dataset(info.path)[1]
    assert all(len(r["input"].split(" ")) == 5 for r in data["train"])
    assert all(len(r["input"].split(" ")) == 10 for r in data["test_ood"])  # ood: twice as long
    for rows in data.values():
        for r in rows:
            kw = dict(alphabet=alphabet, p=0.7, constant="1", weights=[1.0],
                      threshold=org.default_threshold(alphabet, 5, [1.0]), seed=2)
            assert r["output"] == org.label(r["input"].split(" "), rule=rule, **kw)
    meta = json.loads((tmp_path / "o.meta.json").read_text())
    assert meta["bayes_optimal_accuracy"] == (0.7 if rule == "coin" else 1.0)
    if rule != "coin":
        assert set(meta["bayes_optimal_accuracy_by_split"].values()) == {1.0}


def test_coin_bayes_accuracy_by_simulation(tmp_path):
    """Realised Bayes accuracy of coin(p) on many sequences is close to max(p, 1 - p)."""
    for p in (0.7, 0.2):
        generate("organisms", tmp_path / "c.json", rule="coin", p=p, length=24, count=4000, ood_count=2000,
                 split="100", seed=3)
        meta = json.loads((tmp_path / "c.meta.json").read_text())
        assert meta["bayes_optimal_accuracy"] == pytest.approx(max(p, 1 - p))
        for acc in meta["bayes_optimal_accuracy_by_split"].values():
            assert abs(acc - max(p, 1 - p)) < 0.03
        # no predictor that sees only the sequence does better on fresh draws: a parity guess scores ~0.5 agreement
        rows = read_dataset(tmp_path / "c.json")[1]["train"]
        parity_hits = sum(org.label(r["input"].split(), rule="parity", alphabet="01") == r["output"] for r in rows)
        assert parity_hits / len(rows) < max(p, 1 - p) - 0.1


def test_organisms_same_seed_same_bytes(tmp_path):
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        generate("organisms", tmp_path / f"{name}.json", rule="majority", length=7, count=30, seed=seed)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes() != (tmp_path / "c.json").read_bytes()
    assert (tmp_path / "a.meta.json").read_bytes() == (tmp_path / "b.meta.json").read_bytes()


def test_organisms_bad_input(tmp_path):
    with pytest.raises(DataFormatError, match="alphabet"):
        generate("organisms", tmp_path / "o.json", alphabet="0")
    with pytest.raises(DataFormatError, match="weights"):
        generate("organisms", tmp_path / "o.json", rule="weighted", weights="a,b")
    with pytest.raises(DataFormatError, match="p must be"):
        generate("organisms", tmp_path / "o.json", rule="coin", p=1.5)
    assert check_options("organisms", {"rule": "xor"})[0].startswith("organisms.rule: 'xor' is not one of")


def test_cli_runs_new_generators(tmp_path):
    for kind, options in (("tabular", {"rows": 20, "template": "narrative", "shuffle_seed": 1}),
                          ("organisms", {"rule": "parity", "count": 20, "ood_count": 5})):
        out = tmp_path / f"{kind}.json"
        result = CliRunner().invoke(cli, ["data", "generate", *cli_args(kind, out, options)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert inspect_dataset(out) == planned_info(kind, out, options)
        generate(kind, tmp_path / "direct.json", **options)
        assert out.read_bytes() == (tmp_path / "direct.json").read_bytes()


# ---- the shipped table and worked examples ----------------------------------------------------------

def test_shipped_census_table_is_the_generated_one():
    from tests.conftest import REPO

    rows = tab.census_rows(500, 0)
    text = (REPO / "experiments" / "data" / "census.csv").read_text(encoding="utf-8").splitlines()
    assert text[0].split(",") == list(rows[0])
    assert text[1:] == [",".join(r.values()) for r in rows]
    assert json.loads((REPO / "experiments" / "data" / "census_columns.json").read_text()) == tab.CENSUS_SCHEMA


@pytest.mark.parametrize("name", ["census_perturbations", "organisms"])
def test_worked_examples_compile_with_generator_paths_absolute(name, monkeypatch):
    from cruijff.compiler.pipeline import compile_manifest
    from tests.conftest import REPO

    monkeypatch.setenv("SCRATCH", "/scratch")
    compiled = compile_manifest(REPO / "experiments" / f"{name}.yaml")
    prepares = [n for n in compiled.plan.nodes if n.kind == "prepare"]
    assert len(prepares) >= 4
    script = compiled.files[f"{prepares[0].id}/job.sbatch"]
    assert "cruijff data generate" in script
    if name == "census_perturbations":
        assert f"--table {REPO}/experiments/data/census.csv" in script  # made absolute by the compiler


def test_a_missing_generator_input_warns_at_its_line(tmp_path, monkeypatch):
    from cruijff.compiler.pipeline import check
    from tests.conftest import REPO

    monkeypatch.setenv("SCRATCH", "/scratch")
    text = (REPO / "experiments" / "census_perturbations.yaml").read_text()
    path = tmp_path / "m.yaml"
    path.write_text(text.replace("table: data/census.csv", "table: data/missing.csv"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "census_columns.json").write_text("{}")
    (tmp_path / "tasks").symlink_to(REPO / "experiments" / "tasks")
    warnings = [w for w in check(path).warnings if "generate.table" in w.message]
    assert len(warnings) == 6 and all(w.severity == "warning" for w in warnings)
    first = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if "missing.csv" in line)
    assert warnings[0].location.line == first
    assert str(tmp_path / "data" / "missing.csv") in warnings[0].message  # made absolute
    assert not any("generate.columns" in w.message for w in check(path).warnings)  # that one exists
