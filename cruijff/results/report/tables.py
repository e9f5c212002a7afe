"""The report's tables: the scoreboard, how numbers are written, and scores/losses as CSV and Parquet."""

from __future__ import annotations

import math
from pathlib import Path

from cruijff.plan import CHECKPOINT_EVAL, EVAL
from cruijff.results.report.collect import ReportError

def scoreboard(scores):
    """One row per (task, run, epoch) that has scores, one column per metric; base models as
    run "<model> (base model)" at epoch "base". Only rows that exist: no empty combinations."""
    import pandas as pd

    keyed = scores.assign(
        run=[r if k == EVAL else f"{m} ({'checkpoint' if k == CHECKPOINT_EVAL else 'base model'})"
             for r, k, m in zip(scores["run"], scores["kind"], scores["model"])],
        epoch=["checkpoint" if k == CHECKPOINT_EVAL else "base" if k != EVAL else str(e)
               for e, k in zip(scores["epoch"], scores["kind"])],
    )
    keys = ["task", "run", "model", "epoch"]
    values = keyed.set_index(keys + ["metric"])["value"]
    board = values[~values.index.duplicated(keep="first")].unstack("metric")
    rows = keyed[keys].drop_duplicates()
    board = board.reindex(pd.MultiIndex.from_frame(rows))  # the plan's order, not unstack's sorted one
    return board[list(dict.fromkeys(keyed["metric"]))]


def score_text(value) -> str:
    """Scores with 4 decimals; a small nonzero one (a loss, a stderr) in 3 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    v = float(value)
    return f"{v:.3g}" if v and abs(v) < 1e-3 else f"{v:.4f}"


def setting_text(value) -> str:
    """A setting as the manifest wrote it: 3e-05, 0.001, 4 (never 0.0000 or 4.0)."""
    import pandas as pd

    if value is None or (not isinstance(value, (list, tuple, dict)) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:g}"
    return str(value)


def write_tables(scores, losses, out: Path) -> dict[str, Path]:
    paths = {}
    for name, df in (("scores", scores), ("losses", losses)):
        csv = out / f"{name}.csv"
        df.to_csv(csv, index=False)
        paths[f"{name}.csv"] = csv
        pq = out / f"{name}.parquet"
        try:
            # Object columns mixing numbers and None/text are written as text, which parquet accepts.
            safe = df.copy()
            for col in safe.columns:
                if safe[col].dtype == object:
                    kinds = {type(v) for v in safe[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
                    if len(kinds) > 1:
                        safe[col] = safe[col].map(lambda v: None if v is None else str(v))
            safe.to_parquet(pq, index=False)
        except ImportError:
            raise ReportError("writing Parquet needs pyarrow", hint="pip install 'cruijff[eval]'") from None
        paths[f"{name}.parquet"] = pq
    return paths

