"""`cruijff embed`, `logits`, `check-finetuned` for humans: a progress bar, the comparison tables."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def progress(total: int | None, what: str) -> Iterator[Callable[[int], None]]:
    """A bar on stderr (total None: a count while the total is unknown); yields advance(n)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3g}"


def comparison(cmp, top: int) -> None:
    """cruijff.llm.check_finetuned's Comparison: the verdict, weight differences, then outputs."""
    from rich.console import Console
    from rich.table import Table

    from cruijff.llm._compare import iter_rows

    console = Console()
    s = cmp.summary()
    colour = "red" if cmp.differs else "green"
    console.print(f"[bold {colour}]{cmp.verdict}[/]: {cmp.model_dir} ({cmp.kind}) vs base {cmp.base_dir}")
    console.print(f"weights: {s['tensors_differing']} of {s['tensors_compared']} tensors differ "
                  f"(max |Δ| {_fmt(s['max_abs_diff'])}, max relative {_fmt(s['max_rel_diff'])}, atol {cmp.atol})")
    for note in cmp.notes:
        console.print(f"note: {note}")
    table = Table(title=f"tensors (largest first, top {top})" if top else "tensors")
    table.add_column("tensor", overflow="fold")
    for col in ("shape", "status", "max |Δ|" if cmp.kind == "full" else "max |Δ| / max |B|",
                "‖Δ‖/‖base‖", "‖Δ‖ or ‖B‖"):
        table.add_column(col)
    for t in iter_rows(cmp, top):
        table.add_row(t.name, "×".join(map(str, t.shape)), t.status, _fmt(t.max_abs), _fmt(t.rel), _fmt(t.norm))
    console.print(table)
    if cmp.outputs:
        out = Table(title=f"outputs (logits atol {cmp.logits_atol})")
        for col in ("prompt", "logits max |Δ|", "same top token", "base generation", "model generation"):
            out.add_column(col)
        for o in cmp.outputs:
            out.add_row(o.prompt, _fmt(o.logits_max_abs), "yes" if o.same_top_token else "no",
                        repr(o.base_generation), repr(o.model_generation))
        console.print(out)
