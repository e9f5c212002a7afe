"""Tabular data to text: each record of a table becomes an instruct row (`input` = the record as text,
`output` = its target column), with seeded perturbations that test whether a fine-tune learned the
content or the surface form.

A column schema (JSON or YAML; the built-in census one is `CENSUS_SCHEMA`) describes the table:

    {"target": "income",
     "subject": "The person",                       # narrative sentences start with this
     "columns": [
       {"name": "age", "type": "number", "label": "age", "unit": "years old",
        "clause": "is {value}", "short": "age", "short_unit": "y/o",
        "synonyms": ["years of age"]},              # number: synonyms of the unit
       {"name": "sex", "type": "category", "label": "sex", "clause": "is {value}",
        "values": {"F": "female", "M": "male"},    # raw value -> phrase
        "short_values": {"F": "f", "M": "m"},
        "synonyms": {"F": ["a woman"], "M": ["a man"]}},
       {"name": "income", "type": "category", "values": {">50K": "1", "<=50K": "0"}}]}

Templates: `dictionary` ("age: 42 years old, sex: female") and `narrative` ("The person is 42 years
old and is female."). Perturbations, each on when its seed is given and drawing from its own
random stream (so turning one on never changes what another does):
- reorder_seed: one random order of the features for the whole dataset;
- shuffle_seed: a new random order for every record;
- synonyms_seed: every value phrase (or unit) that has synonyms is replaced by a random one;
- shorthand_seed: each feature is written in its short form (label, unit, value) with probability
  shorthand_rate;
- irrelevant_seed: `irrelevant_clauses` irrelevant facts ("likes tea") are inserted at random places.
Each row keeps its raw feature values under `meta` (for per-group scores in `cruijff report`);
`<out>.meta.json` beside the dataset records the full configuration and its sha256.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any, Sequence

from cruijff.data.convert import parse_split, read_csv, split_rows, write_instruct_json
from cruijff.data.formats import DataFormatError, DatasetInfo

TEMPLATES = ("dictionary", "narrative")
PERTURBATIONS = ("reorder", "shuffle", "synonyms", "shorthand", "irrelevant")

# Facts with no bearing on any census target: the `irrelevant` perturbation draws from these.
IRRELEVANT = (
    ("favourite colour", "blue", "likes the colour blue"),
    ("favourite drink", "tea", "prefers tea to coffee"),
    ("pet", "a cat", "has a cat"),
    ("shoe size", "42", "wears shoe size 42"),
    ("birth month", "March", "was born in March"),
    ("hobby", "chess", "plays chess on weekends"),
    ("favourite season", "autumn", "likes autumn best"),
    ("commute", "by bicycle", "commutes by bicycle"),
)

_EDUCATION = {"hs": "a high-school diploma", "some_college": "some college",
              "bachelor": "a bachelor's degree", "master": "a master's degree", "doctorate": "a doctorate"}
_OCCUPATION = {"nurse": "nurse", "teacher": "teacher", "engineer": "engineer", "clerk": "clerk",
               "driver": "driver", "manager": "manager", "cook": "cook", "farmer": "farmer"}
CENSUS_SCHEMA: dict[str, Any] = {
    "target": "income",
    "subject": "The person",
    "columns": [
        {"name": "age", "type": "number", "label": "age", "unit": "years old", "clause": "is {value}",
         "short": "age", "short_unit": "y/o", "synonyms": ["years of age", "years"]},
        {"name": "sex", "type": "category", "label": "sex", "clause": "is {value}",
         "values": {"F": "female", "M": "male"}, "short_values": {"F": "f", "M": "m"},
         "synonyms": {"F": ["a woman", "a female"], "M": ["a man", "a male"]}},
        {"name": "education", "type": "category", "label": "education", "clause": "has {value}",
         "short": "edu", "values": _EDUCATION,
         "short_values": {"hs": "HS", "some_college": "some coll.", "bachelor": "BA", "master": "MA",
                          "doctorate": "PhD"},
         "synonyms": {"hs": ["a secondary-school diploma"], "some_college": ["a partial college education"],
                      "bachelor": ["an undergraduate degree"], "master": ["a graduate degree"],
                      "doctorate": ["a PhD"]}},
        {"name": "occupation", "type": "category", "label": "occupation", "clause": "works as a {value}",
         "short": "occ", "values": _OCCUPATION,
         "short_values": {"nurse": "RN", "teacher": "tchr", "engineer": "eng", "clerk": "clk",
                          "driver": "drv", "manager": "mgr", "cook": "ck", "farmer": "frm"},
         "synonyms": {"nurse": ["caregiver"], "teacher": ["educator"], "engineer": ["technician"],
                      "clerk": ["office worker"], "driver": ["chauffeur"], "manager": ["supervisor"],
                      "cook": ["chef"], "farmer": ["grower"]}},
        {"name": "hours_per_week", "type": "number", "label": "hours per week", "unit": "hours a week",
         "clause": "works {value}", "short": "hrs/wk", "short_unit": "h", "synonyms": ["weekly hours"]},
        {"name": "region", "type": "category", "label": "region", "clause": "lives in the {value}",
         "short": "reg", "values": {"north": "north", "south": "south", "east": "east", "west": "west"},
         "short_values": {"north": "N", "south": "S", "east": "E", "west": "W"},
         "synonyms": {"north": ["northern region"], "south": ["southern region"],
                      "east": ["eastern region"], "west": ["western region"]}},
        {"name": "income", "type": "category", "label": "income", "values": {">50K": "1", "<=50K": "0"}},
    ],
}


# ---- the built-in synthetic census table ------------------------------------------------------

def census_probability(row: dict[str, Any]) -> float:
    """P(income > 50K | features): the known logistic rule the census table is drawn from."""
    edu = {"hs": -1.0, "some_college": -0.4, "bachelor": 0.5, "master": 1.1, "doctorate": 1.6}[row["education"]]
    occ = {"manager": 1.0, "engineer": 0.9, "teacher": 0.0, "nurse": 0.2, "clerk": -0.6,
           "driver": -0.5, "cook": -1.0, "farmer": -0.7}[row["occupation"]]
    age = float(row["age"])
    z = (-1.2 + edu + occ + 0.06 * (age - 40) - 0.0012 * (age - 40) ** 2
         + 0.05 * (float(row["hours_per_week"]) - 40) + (0.3 if row["sex"] == "M" else 0.0))
    return 1.0 / (1.0 + math.exp(-z))


def census_rows(rows: int = 1000, seed: int = 0) -> list[dict[str, str]]:
    """A census-like table drawn deterministically from the seed (values as CSV strings)."""
    if rows < 1:
        raise DataFormatError(f"tabular: rows must be at least 1, got {rows}")
    rng = random.Random(f"census:{seed}")
    out = []
    for i in range(rows):
        age = min(80, max(18, round(rng.gauss(41, 13))))
        education = rng.choices(list(_EDUCATION), weights=[35, 25, 25, 11, 4])[0]
        row = {"id": str(i + 1), "age": str(age), "sex": rng.choice("FM"),
               "education": education, "occupation": rng.choice(list(_OCCUPATION)),
               "hours_per_week": str(min(80, max(5, round(rng.gauss(40, 9))))),
               "region": rng.choice(["north", "south", "east", "west"])}
        row["income"] = ">50K" if rng.random() < census_probability(row) else "<=50K"
        out.append(row)
    return out


def census_bayes_accuracy(rows: Sequence[dict[str, Any]]) -> float:
    """Expected accuracy of the Bayes rule (predict the likelier class) on these rows."""
    if not rows:
        return float("nan")
    return sum(max(p, 1 - p) for p in map(census_probability, rows)) / len(rows)


# ---- schema and table ---------------------------------------------------------------------------

def load_schema(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return CENSUS_SCHEMA
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DataFormatError(f"tabular: cannot read the column schema {p} ({e.strerror})") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            from ruamel.yaml import YAML

            schema = YAML(typ="safe").load(text)
        else:
            schema = json.loads(text)
    except Exception as e:  # ruamel and json raise different families
        raise DataFormatError(f"{p}: not a readable column schema ({e})") from None
    check_schema(schema, str(p))
    return schema


def check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict) or not isinstance(schema.get("columns"), list) or not schema["columns"]:
        raise DataFormatError(f"{where}: a column schema is an object with a non-empty 'columns' list",
                              hint="see docs/research_kit.md, 'Tabular data to text'")
    for i, col in enumerate(schema["columns"]):
        if not isinstance(col, dict) or not isinstance(col.get("name"), str):
            raise DataFormatError(f"{where}: columns[{i}] needs a 'name'")
        if col.get("type", "category") not in ("number", "category"):
            raise DataFormatError(f"{where}: columns[{i}] ({col['name']}): type must be number or category")


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """A CSV or parquet table as dicts (CSV values stay strings)."""
    p = Path(path)
    if p.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DataFormatError("reading parquet needs pyarrow", hint="pip install pyarrow") from None
        if not p.is_file():
            raise DataFormatError(f"tabular: table not found: {p}")
        return pq.read_table(p).to_pylist()
    return read_csv(p)


def table_rows_count(path: str | Path) -> int:
    """Rows in a table without reading its values (plan time)."""
    p = Path(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(p).metadata.num_rows
    return len(read_csv(p))


# ---- rendering -----------------------------------------------------------------------------------

def _rng(seed: int, name: str, index: int | None = None) -> random.Random:
    """A perturbation's own stream (per record when index is given): string seeds hash stably."""
    return random.Random(f"{name}:{seed}" + ("" if index is None else f":{index}"))


def _feature_text(col: dict[str, Any], raw: Any, *, short: bool, synonym_rng: random.Random | None
                  ) -> tuple[str, str]:
    """(label, value phrase) of one feature."""
    label = col.get("short", col.get("label", col["name"])) if short else col.get("label", col["name"])
    value = str(raw)
    if col.get("type", "category") == "number":
        unit = col.get("unit")
        if synonym_rng is not None and col.get("synonyms"):
            unit = synonym_rng.choice(list(col["synonyms"]))
        if short:
            unit = col.get("short_unit", unit)
        return label, f"{value} {unit}" if unit else value
    phrases = (col.get("short_values") if short else None) or col.get("values") or {}
    phrase = str(phrases.get(value, value))
    if synonym_rng is not None and not short:
        options = (col.get("synonyms") or {}).get(value)
        if options:
            phrase = synonym_rng.choice(list(options))
    return label, phrase


def record_text(record: dict[str, Any], schema: dict[str, Any], features: Sequence[str], *, template: str,
                index: int, options: dict[str, Any]) -> str:
    """One record as text, with the perturbations whose seeds are set in options."""
    cols = {c["name"]: c for c in schema["columns"]}
    order = list(features)
    if options.get("shuffle_seed") is not None:
        _rng(options["shuffle_seed"], "shuffle", index).shuffle(order)
    syn = _rng(options["synonyms_seed"], "synonyms", index) if options.get("synonyms_seed") is not None else None
    short_rng = (_rng(options["shorthand_seed"], "shorthand", index)
                 if options.get("shorthand_seed") is not None else None)
    rate = float(options.get("shorthand_rate", 1.0))
    parts: list[tuple[str, str, str]] = []  # (label, value, narrative clause)
    for name in order:
        col = cols[name]
        short = short_rng is not None and short_rng.random() < rate
        label, value = _feature_text(col, record[name], short=short, synonym_rng=syn)
        clause = col.get("clause", f"has {col.get('label', name)} {{value}}").format(value=value)
        parts.append((label, value, clause))
    if options.get("irrelevant_seed") is not None:
        rng = _rng(options["irrelevant_seed"], "irrelevant", index)
        k = min(int(options.get("irrelevant_clauses", 2)), len(IRRELEVANT))
        for label, value, clause in rng.sample(IRRELEVANT, k):
            parts.insert(rng.randint(0, len(parts)), (label, value, clause))
    if template == "dictionary":
        return ", ".join(f"{label}: {value}" for label, value, _ in parts)
    clauses = [c for _, _, c in parts]
    body = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    return f"{schema.get('subject', 'The record')} {body}."


def target_text(record: dict[str, Any], schema: dict[str, Any], target: str) -> str:
    col = next((c for c in schema["columns"] if c["name"] == target), {})
    raw = str(record[target])
    return str((col.get("values") or {}).get(raw, raw))


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def metadata_path(out: str | Path) -> Path:
    """Where a generator's metadata lives: `data/census.json` -> `data/census.meta.json`."""
    p = Path(out).expanduser()
    return p.with_name(p.stem + ".meta.json") if p.suffix else p.with_name(p.name + ".meta.json")


def write_metadata(out: str | Path, meta: dict[str, Any]) -> Path:
    import os

    path = metadata_path(out).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def tabular_examples(records: Sequence[dict[str, Any]], schema: dict[str, Any], *, target: str,
                     template: str, options: dict[str, Any], source: str) -> list[dict[str, Any]]:
    if template not in TEMPLATES:
        raise DataFormatError(f"tabular: template {template!r} is not one of {', '.join(TEMPLATES)}")
    names = [c["name"] for c in schema["columns"]]
    if target not in names:
        raise DataFormatError(f"tabular: target {target!r} is not a column of the schema ({', '.join(names)})")
    if not records:
        raise DataFormatError(f"{source}: the table has no rows")
    missing = [n for n in names if n not in records[0]]
    if missing:
        raise DataFormatError(f"{source}: the table lacks the schema's columns {', '.join(missing)}",
                              hint=f"table columns: {', '.join(map(str, records[0]))}")
    features = [n for n in names if n != target]
    if options.get("reorder_seed") is not None:
        _rng(options["reorder_seed"], "reorder").shuffle(features)
    out = []
    for i, rec in enumerate(records):
        out.append({"input": record_text(rec, schema, features, template=template, index=i, options=options),
                    "output": target_text(rec, schema, target),
                    "meta": {n: rec[n] for n in names if n != target}})
    return out


def generate_tabular(out: str | Path, *, table: str | None = None, columns: str | None = None,
                     rows: int = 1000, target: str | None = None, template: str = "dictionary",
                     reorder_seed: int | None = None, shuffle_seed: int | None = None,
                     synonyms_seed: int | None = None, shorthand_seed: int | None = None,
                     shorthand_rate: float = 1.0, irrelevant_seed: int | None = None,
                     irrelevant_clauses: int = 2, split: str | Sequence[int] = "80,10,10", seed: int = 0,
                     overwrite: bool = True) -> DatasetInfo:
    """Read (or draw the built-in census) table, render each record, split with the seed, write
    instruct_json plus `<out>.meta.json` (configuration, its hash, the perturbations and their seeds)."""
    pct = parse_split(split)
    if not 0 <= shorthand_rate <= 1:
        raise DataFormatError(f"tabular: shorthand_rate must be in [0, 1], got {shorthand_rate}")
    if irrelevant_clauses < 0:
        raise DataFormatError(f"tabular: irrelevant_clauses must be >= 0, got {irrelevant_clauses}")
    schema = load_schema(columns)
    target = target or schema.get("target")
    if not target:
        raise DataFormatError("tabular: no target column", hint="set `target` or the schema's 'target'")
    if table:
        records, source = read_table(table), str(table)
    else:
        records, source = census_rows(rows, seed), "built-in census table"
    options = {"reorder_seed": reorder_seed, "shuffle_seed": shuffle_seed, "synonyms_seed": synonyms_seed,
               "shorthand_seed": shorthand_seed, "shorthand_rate": shorthand_rate,
               "irrelevant_seed": irrelevant_seed, "irrelevant_clauses": irrelevant_clauses}
    examples = tabular_examples(records, schema, target=target, template=template, options=options, source=source)
    config = {"generator": "tabular", "template": template, "target": target, "split": list(pct), "seed": seed,
              "table": (str(table) if table else f"census(rows={rows}, seed={seed})"),
              "table_sha256": file_sha256(table) if table else None,
              "columns": schema, **options}
    meta = {"generator": "tabular", "config": config, "config_hash": config_hash(config),
            "perturbations": {p: options[f"{p}_seed"] for p in PERTURBATIONS if options[f"{p}_seed"] is not None},
            "rows": len(examples)}
    if not table:
        meta["bayes_optimal_accuracy"] = round(census_bayes_accuracy(records), 6)
    info = write_instruct_json(out, split_rows(examples, pct, seed + 1), overwrite=overwrite)
    write_metadata(out, meta)
    return info
