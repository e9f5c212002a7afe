"""`cruijff data ...`: inspect, convert and generate datasets (see docs/data.md).

The `generate <kind>` commands are built from cruijff.data.generate.GENERATORS, the same table the
compiler uses to turn a manifest's `generate:` block into this command line.
"""

from __future__ import annotations

import json

import click

from cruijff.data.convert import SOURCES, TARGETS
from cruijff.data.formats import FORMATS, DatasetInfo
from cruijff.data.generate import GENERATORS, Option


@click.group("data")
def data() -> None:
    """Dataset formats: inspect, convert, generate."""


@data.command("inspect")
@click.argument("path", type=click.Path(exists=True))
@click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
              help="The dataset's format (detected from the layout when left out).")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def inspect_cmd(path: str, format_: str | None, as_json: bool) -> None:
    """Check a dataset and show its format, splits, row counts and fields."""
    from cruijff.data.formats import inspect_dataset

    info = inspect_dataset(path, format_)
    if as_json:
        from cruijff.commands.jsonout import emit

        emit("data.inspect", {"dataset": info.as_dict()})
    else:
        _show(info)


@data.command("convert")
@click.argument("src", type=click.Path(exists=True))
@click.argument("dst", type=click.Path())
@click.option("--to", "to", required=True, type=click.Choice(TARGETS),
              help="Target format.")
@click.option("--from", "src_format", default=None,
              type=click.Choice(SOURCES),
              help="Source format (detected when left out; a .csv file is csv).")
@click.option("--template", default=None, help="instruct -> chat: user turn template with {input}.")
@click.option("--system", default=None, help="instruct -> chat: system message (a row's own 'system' wins).")
@click.option("--input-column", "input_columns", multiple=True, default=("input",), show_default=True,
              help="CSV: input column; repeat it to make the input 'column: value' lines.")
@click.option("--output-column", default="output", show_default=True, help="CSV: output column.")
@click.option("--split", default="80,10,10", show_default=True,
              help="CSV: percentages of train,validation,test.")
@click.option("--seed", default=0, show_default=True, type=int, help="CSV: seed of the shuffle before splitting.")
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
def convert_cmd(src: str, dst: str, to: str, src_format: str | None, template: str | None,
                system: str | None, input_columns: tuple[str, ...], output_column: str, split: str,
                seed: int, force: bool) -> None:
    """Convert SRC (instruct_json, chat_json, parquet, arrow, text or CSV) into DST."""
    from cruijff.data.convert import convert

    result = convert(src, dst, to=to, src_format=src_format, template=template, system=system,
                     input_columns=input_columns, output_column=output_column, split=split,
                     seed=seed, overwrite=force)
    if result.dropped_turns:
        click.echo(f"warning: dropped {result.dropped_turns} earlier turns of multi-turn "
                   "conversations (instruct rows keep the last user/assistant pair)", err=True)
    _show(result.info, verb="wrote")


@data.command("stats")
@click.argument("path", type=click.Path(exists=True))
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder whose tokenizer counts the tokens (Hugging Face layout).")
@click.option("--max-seq-len", type=click.IntRange(min=1), default=None,
              help="Also count the rows longer than this many tokens (training truncates them).")
@click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
              help="The dataset's format (detected when left out).")
@click.option("--template", default=None, help="Prompt template with {input}, as in the manifest's prompt.")
@click.option("--system", default=None, help="System message, as in the manifest's prompt.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats_cmd(path: str, model_dir: str, max_seq_len: int | None, format_: str | None, template: str | None,
              system: str | None, as_json: bool) -> None:
    """Token statistics of a dataset with a model's tokenizer: lengths, percentiles, rows over max_seq_len."""
    from dataclasses import asdict

    from cruijff.data.stats import PERCENTILES, token_stats

    stats, method = token_stats(path, model_dir, format=format_, template=template, system=system,
                                max_seq_len=max_seq_len)
    if as_json:
        from cruijff.commands.jsonout import emit

        emit("data.stats", {"path": path, "model": model_dir, "method": method, "max_seq_len": max_seq_len,
                            "splits": [asdict(s) for s in stats]})
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"{path}: tokens with the tokenizer of {model_dir} ({method})", soft_wrap=True)
    table = Table(show_edge=False)
    cols = ["split", "rows", "part", "mean", *[f"p{q}" for q in PERCENTILES], "max", "sum"]
    if max_seq_len:
        cols.append(f"> {max_seq_len}")
    for c in cols:
        table.add_column(c, justify="left" if c in ("split", "part") else "right")
    for s in stats:
        for part in ("prompt", "answer", "total"):
            d = getattr(s, part)
            if not d:
                continue
            row = [s.split if part == "prompt" else "", str(s.rows) if part == "prompt" else "", part,
                   f"{d['mean']:.1f}", *[f"{d[f'p{q}']:.0f}" for q in PERCENTILES], f"{d['max']:.0f}",
                   f"{d['sum']:.0f}"]
            if max_seq_len:
                row.append(str(s.over_max) if part == "total" else "")
            table.add_row(*row)
    console.print(table)


@data.group("generate")
def generate() -> None:
    """Generate a synthetic dataset (deterministic for a seed)."""


def _generator_command(kind: str, options: tuple[Option, ...]) -> click.Command:
    def run(out: str, **values) -> None:
        from cruijff.data.generate import generate as run_generator

        info = run_generator(kind, out, **{k: v for k, v in values.items() if v is not None})
        _show(info, verb="wrote")

    params: list[click.Parameter] = [click.Argument(["out"], type=click.Path())]
    for opt in options:
        if opt.type is bool:
            params.append(click.Option([opt.flag, opt.name], is_flag=True, default=False, help=opt.help))
        else:
            kind_type = click.Choice(opt.choices) if opt.choices else opt.type
            params.append(click.Option([opt.flag, opt.name], type=kind_type, default=opt.default,
                                       show_default=opt.default is not None, help=opt.help,
                                       metavar=opt.metavar))
    doc = {
        "capitalization": "Capitalize English words: OUT is a .json file (instruct_json) or a folder (chat_json).",
        "twins": "Simulated twin pairs -> zygosity classification, written to OUT as instruct_json.",
        "tabular": "Table rows -> text (dictionary or narrative) with seeded perturbations: OUT is instruct_json.",
        "organisms": "Sequences labelled by a known rule (parity, majority, ...), with a test_ood split: OUT is instruct_json.",
    }[kind]
    return click.Command(kind, callback=run, params=params, help=doc, short_help=doc.split(":")[0])


for _kind, _options in GENERATORS.items():
    generate.add_command(_generator_command(_kind, _options))


def _show(info: DatasetInfo, verb: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"{verb + ' ' if verb else ''}{info.path}")
    console.print(f"format: {info.format} ({info.kind} rows)")
    console.print(f"fields: {', '.join(info.fields)}")
    table = Table(show_edge=False)
    table.add_column("split")
    table.add_column("rows", justify="right")
    for split, rows in info.splits.items():
        table.add_row(split, str(rows))
    console.print(table)
