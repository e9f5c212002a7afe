"""`cruijff data ...` for humans: a dataset's format, fields and splits; token statistics."""

from __future__ import annotations

import click


def dataset(info, verb: str | None = None) -> None:
    """A DatasetInfo (cruijff.data.formats): path, format, fields and a row count per split."""
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


def dropped_turns(n: int) -> None:
    click.echo(f"warning: dropped {n} earlier turns of multi-turn "
               "conversations (instruct rows keep the last user/assistant pair)", err=True)


def token_stats(path: str, model_dir: str, method: str, stats: list, percentiles, max_seq_len: int | None) -> None:
    """cruijff.data.stats.token_stats: per split, prompt/answer/total token lengths and percentiles."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"{path}: tokens with the tokenizer of {model_dir} ({method})", soft_wrap=True)
    table = Table(show_edge=False)
    cols = ["split", "rows", "part", "mean", *[f"p{q}" for q in percentiles], "max", "sum"]
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
                   f"{d['mean']:.1f}", *[f"{d[f'p{q}']:.0f}" for q in percentiles], f"{d['max']:.0f}",
                   f"{d['sum']:.0f}"]
            if max_seq_len:
                row.append(str(s.over_max) if part == "total" else "")
            table.add_row(*row)
    console.print(table)
