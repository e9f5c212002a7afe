"""Dataset generators and the one table of their options.

The table (GENERATORS) is the single source of truth for three consumers that must agree:
the `cruijff data generate <kind>` command builds its click options from it, the compiler turns a
manifest's `datasets.<name>.generate: {kind: ..., <option>: <value>}` into that command line with
`cli_args`, and `planned_info` tells the compiler the output's format and split sizes at plan time,
before anything is generated. This module imports nothing heavy; the generators themselves are
imported only when run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cruijff.data.formats import INSTRUCT, CHAT, DataFormatError, DatasetInfo


@dataclass(frozen=True)
class Option:
    """One generator option: manifest key `name`, command-line flag `--name-with-hyphens`."""

    name: str
    type: type  # int, float, str or bool (bool: a bare flag, present when true)
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    metavar: str | None = None  # for --help only; "PATH": a file, made absolute against the manifest
    reads: bool = False  # a file the generator reads: plan warns when it cannot see it

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


_SPLIT = Option("split", str, "80,10,10", "Percentages of train,validation,test (1 to 3 numbers summing to 100).")
_SEED = Option("seed", int, 0, "Seed of every random choice: same seed, identical bytes.")

GENERATORS: dict[str, tuple[Option, ...]] = {
    "capitalization": (
        Option("letters", int, 5, "Word length: only words of exactly this many letters."),
        Option("count", int, 1000, "Number of distinct words (examples) to draw."),
        _SPLIT,
        Option("format", str, "instruct_json", "Output format.", ("instruct_json", "chat_json")),
        _SEED,
    ),
    "twins": (
        Option("pairs", int, 1000, "Number of simulated twin pairs (examples)."),
        Option("traits", int, 3, "Number of simulated traits per twin."),
        Option("absolute_difference", bool, False, "Input holds |v1 - v2| per trait, not both values."),
        Option("add_truth", bool, False, "Append the label to the input (a deliberate leak, for sanity checks)."),
        Option("heritability", float, 0.6, "Share of trait variance from additive genes (0..1)."),
        Option("shared_environment", float, 0.1, "Share of trait variance from the shared environment."),
        Option("mz_fraction", float, 0.5, "Fraction of pairs that are monozygotic."),
        _SPLIT,
        _SEED,
        Option("csv", str, None, "Also write the simulated twin CSV to this path.", metavar="PATH"),
        Option("from_csv", str, None, "Preprocess this twin CSV instead of simulating (simulation options ignored).",
               metavar="PATH", reads=True),
    ),
    "tabular": (
        Option("table", str, None, "CSV or parquet table (default: the built-in synthetic census table).",
               metavar="PATH", reads=True),
        Option("columns", str, None, "Column schema, JSON or YAML (default: the built-in census schema).",
               metavar="PATH", reads=True),
        Option("rows", int, 1000, "Rows of the built-in census table (ignored with table)."),
        Option("target", str, None, "Target column (default: the schema's target)."),
        Option("style", str, "dictionary", "How a record reads (was `template`, a name that means a prompt "
               "template everywhere else).", ("dictionary", "narrative")),
        Option("reorder_seed", int, None, "Perturbation: one random feature order for the whole dataset."),
        Option("shuffle_seed", int, None, "Perturbation: a random feature order per record."),
        Option("synonyms_seed", int, None, "Perturbation: value phrases and units replaced by synonyms."),
        Option("shorthand_seed", int, None, "Perturbation: features written in short form."),
        Option("shorthand_rate", float, 1.0, "Share of features written short (with shorthand_seed)."),
        Option("irrelevant_seed", int, None, "Perturbation: irrelevant clauses inserted at random places."),
        Option("irrelevant_clauses", int, 2, "Irrelevant clauses per record (with irrelevant_seed)."),
        _SPLIT,
        _SEED,
    ),
    "organisms": (
        Option("rule", str, "parity", "Rule from sequence to label.",
               ("parity", "majority", "first", "constant", "coin", "weighted")),
        Option("alphabet", str, "01", "Symbols of the sequences (letters or digits)."),
        Option("length", int, 8, "Sequence length in distribution (train, validation, test)."),
        Option("ood_length", int, None, "Sequence length of the test_ood split (default: 2 x length)."),
        Option("count", int, 1000, "In-distribution sequences (split by `split`)."),
        Option("ood_count", int, 200, "Out-of-distribution sequences (split test_ood; 0 for none)."),
        Option("p", float, 0.7, "coin: probability of label 1."),
        Option("constant", str, "1", "constant: the label."),
        Option("weights", str, "1", "weighted: comma-separated weights, cycled over positions."),
        Option("threshold", float, None, "weighted: label 1 above this sum (default: the expected sum)."),
        Option("separator", str, " ", "Between symbols in the input."),
        _SPLIT,
        _SEED,
    ),
}

# The dataset format each generator writes; capitalization's follows its `format` option.
_OUTPUT_FORMAT = {"twins": "instruct_json", "tabular": "instruct_json", "organisms": "instruct_json"}


def path_options(kind: str, *, reads: bool = False) -> tuple[str, ...]:
    """Options that name files (only those read, with reads): made absolute against the manifest."""
    return tuple(o.name for o in GENERATORS.get(kind, ()) if o.metavar == "PATH" and (o.reads or not reads))


def generator_options(kind: str) -> tuple[Option, ...]:
    if kind not in GENERATORS:
        raise DataFormatError(f"unknown generator {kind!r}", hint=f"generators: {', '.join(GENERATORS)}")
    return GENERATORS[kind]


def check_options(kind: str, options: dict[str, Any]) -> list[str]:
    """Every problem with a manifest's generate options (unknown keys, wrong types), as messages."""
    if kind not in GENERATORS:
        return [f"unknown generator {kind!r} (generators: {', '.join(GENERATORS)})"]
    spec = {o.name: o for o in GENERATORS[kind]}
    problems = []
    for key, value in _without_kind(kind, options).items():
        opt = spec.get(key)
        if opt is None:
            problems.append(f"{kind}: unknown option {key!r} (options: {', '.join(spec)})")
        elif value is None:
            continue
        elif opt.type is bool and not isinstance(value, bool):
            problems.append(f"{kind}.{key}: expected true or false, got {value!r}")
        elif opt.type is int and (isinstance(value, bool) or not isinstance(value, int)):
            problems.append(f"{kind}.{key}: expected a whole number, got {value!r}")
        elif opt.type is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append(f"{kind}.{key}: expected a number, got {value!r}")
        elif opt.type is str and key == "split" and isinstance(value, list):
            continue  # [80, 10, 10] is accepted and joined with commas
        elif opt.type is str and not isinstance(value, (str, int, float)):
            problems.append(f"{kind}.{key}: expected a string, got {value!r}")
        elif opt.choices and value not in opt.choices:
            problems.append(f"{kind}.{key}: {value!r} is not one of {', '.join(opt.choices)}")
    if not problems and "split" in options and options["split"] is not None:
        from cruijff.data.convert import parse_split

        try:
            parse_split(_split_text(options["split"]))
        except DataFormatError as e:
            problems.append(f"{kind}.split: {e.message}")
    return problems


def cli_args(kind: str, out: str | Path, options: dict[str, Any]) -> list[str]:
    """The arguments after `cruijff data generate`: [kind, out, --flag value, ...] (unquoted).

    true booleans become bare flags, false and null values are left out; keys map to flags by
    underscores -> hyphens; a list split is joined with commas.
    """
    problems = check_options(kind, options)
    if problems:
        raise DataFormatError("; ".join(problems))
    args = [kind, str(out)]
    options = _without_kind(kind, options)
    for opt in GENERATORS[kind]:
        if opt.name not in options or options[opt.name] is None:
            continue
        value = options[opt.name]
        if opt.type is bool:
            if value:
                args.append(opt.flag)
            continue
        args += [opt.flag, _split_text(value) if opt.name == "split" else str(value)]
    return args


def resolved(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """Options with defaults filled in, as the generator will see them."""
    out = {o.name: o.default for o in generator_options(kind)}
    out.update({k: v for k, v in _without_kind(kind, options).items() if v is not None})
    if "split" in out:
        out["split"] = _split_text(out["split"])
    return out


def output_format(kind: str, options: dict[str, Any]) -> str:
    return _OUTPUT_FORMAT.get(kind) or resolved(kind, options)["format"]


def planned_info(kind: str, out: str | Path, options: dict[str, Any]) -> DatasetInfo:
    """What the generator will write, without running it (split sizes are exact).

    For twins with from_csv the row count depends on the CSV, so it is read (stdlib only).
    """
    from cruijff.data.convert import parse_split, split_sizes

    opts = resolved(kind, options)
    pct = parse_split(opts["split"])
    if kind == "capitalization":
        n = opts["count"]
        fmt = opts["format"]
        fields = ("input", "output") if fmt == "instruct_json" else ("messages",)
        kind_ = INSTRUCT if fmt == "instruct_json" else CHAT
    elif kind == "tabular":
        n = opts["rows"]
        if opts.get("table"):
            from cruijff.data.generate.tabular import table_rows_count

            n = table_rows_count(opts["table"])
        return DatasetInfo(str(Path(out).expanduser().resolve()), "instruct_json", split_sizes(n, pct),
                           ("input", "output", "meta"), INSTRUCT)
    elif kind == "organisms":
        from cruijff.data.generate.organisms import planned_sizes

        return DatasetInfo(str(Path(out).expanduser().resolve()), "instruct_json",
                           planned_sizes(opts["count"], opts["ood_count"], pct), ("input", "output", "meta"),
                           INSTRUCT)
    else:
        n = opts["pairs"]
        if opts.get("from_csv"):
            from cruijff.data.convert import read_csv

            n = len(read_csv(opts["from_csv"]))
        fmt, fields, kind_ = "instruct_json", ("input", "output"), INSTRUCT
    return DatasetInfo(str(Path(out).expanduser().resolve()), fmt, split_sizes(n, pct), fields, kind_)


def generate(kind: str, out: str | Path, **options: Any) -> DatasetInfo:
    """Run a generator by name with manifest-style options (defaults filled in)."""
    problems = check_options(kind, options)
    if problems:
        raise DataFormatError("; ".join(problems))
    opts = resolved(kind, options)
    if kind == "capitalization":
        from cruijff.data.generate.capitalization import generate_capitalization

        return generate_capitalization(out, **opts)
    if kind == "tabular":
        from cruijff.data.generate.tabular import generate_tabular

        return generate_tabular(out, template=opts.pop("style"), **opts)
    if kind == "organisms":
        from cruijff.data.generate.organisms import generate_organisms

        return generate_organisms(out, **opts)
    from cruijff.data.generate.twins import generate_twins

    return generate_twins(out, **opts)


# Options renamed, by generator: old manifest key → new one (old manifests keep planning the same data).
RENAMED = {"tabular": {"template": "style"}}


def _without_kind(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """A manifest's generate block may be passed whole: its `kind` key is dropped when it matches.
    Renamed options (RENAMED) are read under their new names."""
    if options.get("kind") not in (None, kind):
        return options  # a different kind: check_options reports 'kind' as an unknown option
    renamed = RENAMED.get(kind, {})
    out = {k: v for k, v in options.items() if k != "kind" and k not in renamed}
    for old, new in renamed.items():
        if old in options and new not in options:
            out[new] = options[old]
    return out


def _split_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)
