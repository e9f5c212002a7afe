"""`cruijff data ...`: inspect, convert and generate datasets (see docs/data.md).

The `generate <kind>` commands are built from cruijff.data.generate.GENERATORS, the same table the
compiler uses to turn a manifest's `generate:` block into this command line.
"""

from __future__ import annotations

import click

from cruijff.commands import draw
from cruijff.commands.jsonout import emit, errors
from cruijff.commands.prompt_options import template_options
from cruijff.data.convert import SOURCES, TARGETS
from cruijff.data.formats import FORMATS
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

    with errors("data.inspect", as_json):
        info = inspect_dataset(path, format_)
    if as_json:
        emit("data.inspect", {"dataset": info.as_dict()})
    else:
        draw.dataset(info)


@data.command("convert")
@click.argument("src", type=click.Path(exists=True))
@click.argument("dst", type=click.Path())
@click.option("--to", "to", required=True, type=click.Choice(TARGETS),
              help="Target format.")
@click.option("--from", "src_format", default=None,
              type=click.Choice(SOURCES),
              help="Source format (detected when left out; a .csv file is csv).")
@template_options
@click.option("--system", default=None, help="instruct -> chat: system message (a row's own 'system' wins).")
@click.option("--input-column", "input_columns", multiple=True, default=("input",), show_default=True,
              help="CSV: input column; repeat it to make the input 'column: value' lines.")
@click.option("--output-column", default="output", show_default=True, help="CSV: output column.")
@click.option("--split", default="80,10,10", show_default=True,
              help="CSV: percentages of train,validation,test.")
@click.option("--seed", default=0, show_default=True, type=int, help="CSV: seed of the shuffle before splitting.")
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the written dataset's description as JSON.")
def convert_cmd(src: str, dst: str, to: str, src_format: str | None, template: str | None,
                system: str | None, input_columns: tuple[str, ...], output_column: str, split: str,
                seed: int, force: bool, as_json: bool) -> None:
    """Convert SRC (instruct_json, chat_json, parquet, arrow, text or CSV) into DST."""
    from cruijff.data.convert import convert

    with errors("data.convert", as_json):
        result = convert(src, dst, to=to, src_format=src_format, template=template, system=system,
                         input_columns=input_columns, output_column=output_column, split=split,
                         seed=seed, overwrite=force)
    if as_json:
        emit("data.convert", {"dataset": result.info.as_dict(), "dropped_turns": result.dropped_turns})
        return
    if result.dropped_turns:
        draw.dropped_turns(result.dropped_turns)
    draw.dataset(result.info, verb="wrote")


@data.command("stats")
@click.argument("path", type=click.Path(exists=True))
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder whose tokenizer counts the tokens (Hugging Face layout).")
@click.option("--max-seq-len", type=click.IntRange(min=1), default=None,
              help="Also count the rows longer than this many tokens (training truncates them).")
@click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
              help="The dataset's format (detected when left out).")
@template_options
@click.option("--system", default=None, help="System message, as in the manifest's prompt.")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats_cmd(path: str, model_dir: str, max_seq_len: int | None, format_: str | None, template: str | None,
              system: str | None, as_json: bool) -> None:
    """Token statistics of a dataset with a model's tokenizer: lengths, percentiles, rows over max_seq_len."""
    from dataclasses import asdict

    from cruijff.data.stats import PERCENTILES, token_stats

    from contextlib import nullcontext

    with errors("data.stats", as_json), \
            (nullcontext(None) if as_json else draw.progress(None, "tokenizing rows")) as advance:
        stats, method = token_stats(path, model_dir, format=format_, template=template, system=system,
                                    max_seq_len=max_seq_len, progress=advance)
    if as_json:
        emit("data.stats", {"path": path, "model": model_dir, "method": method, "max_seq_len": max_seq_len,
                            "splits": [asdict(s) for s in stats]})
        return
    draw.token_stats(path, model_dir, method, stats, PERCENTILES, max_seq_len)


@data.group("generate")
def generate() -> None:
    """Generate a synthetic dataset (deterministic for a seed)."""


def _generator_command(kind: str, options: tuple[Option, ...]) -> click.Command:
    def run(out: str, as_json: bool, **values) -> None:
        from cruijff.data.generate import generate as run_generator

        with errors("data.generate", as_json):
            info = run_generator(kind, out, **{k: v for k, v in values.items() if v is not None})
        if as_json:
            emit("data.generate", {"generator": kind, "dataset": info.as_dict()})
        else:
            draw.dataset(info, verb="wrote")

    params: list[click.Parameter] = [click.Argument(["out"], type=click.Path())]
    for opt in options:
        if opt.type is bool:
            params.append(click.Option([opt.flag, opt.name], is_flag=True, default=False, help=opt.help))
        else:
            kind_type = click.Choice(opt.choices) if opt.choices else opt.type
            params.append(click.Option([opt.flag, opt.name], type=kind_type, default=opt.default,
                                       show_default=opt.default is not None, help=opt.help,
                                       metavar=opt.metavar))
    params.append(click.Option(["--json", "as_json"], is_flag=True, help="Print the written dataset's description as JSON."))
    doc = {
        "capitalization": "Capitalize English words: OUT is a .json file (instruct_json) or a folder (chat_json).",
        "twins": "Simulated twin pairs -> zygosity classification, written to OUT as instruct_json.",
        "tabular": "Table rows -> text (dictionary or narrative) with seeded perturbations: OUT is instruct_json.",
        "organisms": "Sequences labelled by a known rule (parity, majority, ...), with a test_ood split: OUT is instruct_json.",
    }[kind]
    return click.Command(kind, callback=run, params=params, help=doc, short_help=doc.split(":")[0])


for _kind, _options in GENERATORS.items():
    generate.add_command(_generator_command(_kind, _options))
