"""Synthetic twins: simulate twin pairs, then turn each pair into a zygosity-classification example.

Simulation (a classical ACE twin model, per trait, in standard units):
    z_i = sqrt(h2) * A_i + sqrt(c2) * C + sqrt(1 - h2 - c2) * E_i
A (additive genes) is identical within monozygotic pairs and correlates 0.5 within dizygotic ones;
C (shared environment) is common to both twins; E is each twin's own noise. So MZ twins correlate
h2 + c2 and DZ twins h2/2 + c2: MZ pairs are more alike, which is what a model can learn.

The CSV has `pair_id`, `zygosity` (MZ or DZ) and per trait `<trait>.1`, `<trait>.2`. An example's
input is one line per trait, `height: 1.72, 1.70` (or `height: 0.02` with absolute_difference),
and its output is "1" for monozygotic, "0" for dizygotic. add_truth appends `truth: <label>` to the
input, a deliberate leak that any working pipeline must learn perfectly.
"""

from __future__ import annotations

import csv
import io
import math
import random
from pathlib import Path
from typing import Sequence

from cruijff.data.convert import parse_split, read_csv, split_rows, write_instruct_json
from cruijff.data.formats import DataFormatError, DatasetInfo

# name, mean, standard deviation, decimals (realistic adult scales; units in the name's usual unit)
TRAITS: tuple[tuple[str, float, float, int], ...] = (
    ("height", 1.72, 0.09, 2),
    ("weight", 74.0, 12.0, 1),
    ("systolic_bp", 122.0, 14.0, 0),
    ("cholesterol", 5.2, 1.0, 2),
    ("grip_strength", 35.0, 9.0, 1),
    ("reaction_time", 0.25, 0.04, 3),
    ("sleep_hours", 7.1, 1.0, 1),
    ("vocabulary", 100.0, 15.0, 0),
)
MISSING = {"", "na", "nan", "null", "none"}


def trait_specs(traits: int) -> list[tuple[str, float, float, int]]:
    """The first `traits` named traits, then generic standard-normal ones (trait_9, ...)."""
    specs = list(TRAITS[:traits])
    specs += [(f"trait_{k}", 0.0, 1.0, 2) for k in range(len(specs) + 1, traits + 1)]
    return specs


def simulate_twins(*, pairs: int = 1000, traits: int = 3, heritability: float = 0.6,
                   shared_environment: float = 0.1, mz_fraction: float = 0.5,
                   seed: int = 0) -> list[dict[str, str]]:
    """Twin CSV rows (all values as the strings the CSV holds)."""
    if pairs < 1 or traits < 1:
        raise DataFormatError(f"twins: pairs and traits must be at least 1 (got {pairs}, {traits})")
    h2, c2 = heritability, shared_environment
    if not (0 <= h2 <= 1 and 0 <= c2 <= 1 and h2 + c2 <= 1):
        raise DataFormatError(f"twins: heritability ({h2}) and shared_environment ({c2}) must be in "
                              "[0, 1] and sum to at most 1")
    if not 0 <= mz_fraction <= 1:
        raise DataFormatError(f"twins: mz_fraction must be in [0, 1], got {mz_fraction}")
    rng = random.Random(seed)
    n_mz = round(pairs * mz_fraction)
    zygosity = ["MZ"] * n_mz + ["DZ"] * (pairs - n_mz)
    rng.shuffle(zygosity)
    specs = trait_specs(traits)
    a, c, e = math.sqrt(h2), math.sqrt(c2), math.sqrt(1 - h2 - c2)
    rows = []
    for pair, zyg in enumerate(zygosity, 1):
        row = {"pair_id": str(pair), "zygosity": zyg}
        for name, mean, sd, decimals in specs:
            a1 = rng.gauss(0.0, 1.0)
            a2 = a1 if zyg == "MZ" else 0.5 * a1 + math.sqrt(0.75) * rng.gauss(0.0, 1.0)
            shared = rng.gauss(0.0, 1.0)
            for twin, genes in (("1", a1), ("2", a2)):
                z = a * genes + c * shared + e * rng.gauss(0.0, 1.0)
                row[f"{name}.{twin}"] = f"{mean + sd * z:.{decimals}f}"
        rows.append(row)
    return rows


def twin_csv_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def trait_columns(header: Sequence[str]) -> list[str]:
    """Traits with both `<trait>.1` and `<trait>.2` columns, in header order."""
    return [c[:-2] for c in header if c.endswith(".1") and f"{c[:-2]}.2" in header]


def zygosity_label(value: str, where: str) -> str:
    """'1' for monozygotic, '0' for dizygotic; accepts MZ/DZ (and MZM, DZF, DOS ...), words or 1/0."""
    v = value.strip().lower()
    if v.startswith("mz") or v in ("monozygotic", "1"):
        return "1"
    if v.startswith("dz") or v.startswith("dos") or v in ("dizygotic", "0"):
        return "0"
    raise DataFormatError(f"{where}: zygosity {value!r} is neither monozygotic nor dizygotic",
                          hint="use MZ/DZ, monozygotic/dizygotic or 1/0")


def twin_examples(rows: list[dict[str, str]], *, absolute_difference: bool = False,
                  add_truth: bool = False, source: str = "twins") -> list[dict[str, str]]:
    """Instruct examples from twin CSV rows, one per pair, in row order."""
    if not rows:
        raise DataFormatError(f"{source}: no twin pairs")
    header = list(rows[0])
    traits = trait_columns(header)
    if "zygosity" not in header:
        raise DataFormatError(f"{source}: no 'zygosity' column (columns: {', '.join(header)})")
    if not traits:
        raise DataFormatError(f"{source}: no trait columns",
                              hint="name each twin's value <trait>.1 and <trait>.2")
    examples = []
    for n, row in enumerate(rows, 2):  # line 1 is the header
        label = zygosity_label(row["zygosity"], f"{source}:{n}")
        lines = []
        for t in traits:
            v1, v2 = row[f"{t}.1"].strip(), row[f"{t}.2"].strip()
            value = _abs_difference(v1, v2, f"{source}:{n}") if absolute_difference else f"{v1}, {v2}"
            lines.append(f"{t}: {value}")
        if add_truth:
            lines.append(f"truth: {label}")
        examples.append({"input": "\n".join(lines), "output": label})
    return examples


def _abs_difference(v1: str, v2: str, where: str) -> str:
    if v1.lower() in MISSING or v2.lower() in MISSING:
        return "NA"
    try:
        x1, x2 = float(v1), float(v2)
    except ValueError:
        raise DataFormatError(f"{where}: trait values {v1!r}, {v2!r} are not numbers") from None
    decimals = max(_decimals(v1), _decimals(v2))
    return f"{abs(x1 - x2):.{decimals}f}"


def _decimals(text: str) -> int:
    mantissa = text.lower().split("e")[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def generate_twins(out: str | Path, *, pairs: int = 1000, traits: int = 3,
                   absolute_difference: bool = False, add_truth: bool = False,
                   heritability: float = 0.6, shared_environment: float = 0.1,
                   mz_fraction: float = 0.5, split: str | Sequence[int] = "80,10,10",
                   seed: int = 0, csv: str | Path | None = None, from_csv: str | Path | None = None,
                   overwrite: bool = True) -> DatasetInfo:
    """Simulate (or read `from_csv`), preprocess, shuffle with the seed, split, write instruct_json."""
    pct = parse_split(split)
    if from_csv:
        rows, source = read_csv(from_csv), str(from_csv)
    else:
        rows = simulate_twins(pairs=pairs, traits=traits, heritability=heritability,
                              shared_environment=shared_environment, mz_fraction=mz_fraction, seed=seed)
        source = "simulated twins"
        if csv:
            path = Path(csv).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(twin_csv_text(rows), encoding="utf-8")
    examples = twin_examples(rows, absolute_difference=absolute_difference, add_truth=add_truth,
                             source=source)
    return write_instruct_json(out, split_rows(examples, pct, seed + 1), overwrite=overwrite)
