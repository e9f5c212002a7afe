"""The report's paired comparisons: every evaluated (setting, epoch) against its base model, and grid
settings that differ in one hyperparameter, per task and per-item metric, Holm-corrected over the report.

Stages: `item_rows` (a tidy per-item table from the eval logs' samples, matched by sample id) →
`comparisons` (pairs, statistics from cruijff.results.paired, Holm) → `write_comparisons` (CSV,
Parquet). A `seed` in the grid makes replicates: runs whose grid differs only in seed are one setting,
compared with the two-level bootstrap. Items share a cluster when their sample metadata or their
record has a `cluster` field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cruijff.plan import BASE_EVAL, EVAL, Plan

COLUMNS = ["task", "metric", "a", "b", "n", "mean_a", "mean_b", "diff", "ci_low", "ci_high", "p", "p_holm", "test"]
EXTRA = ["kind", "epoch", "clusters", "naive_ci_low", "naive_ci_high"]
REPLICATE_KEY = "seed"
INSPECT_VALUES = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}  # inspect's value_to_float


@dataclass
class Comparisons:
    rows: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "a vs b (task): why"

    @property
    def family(self) -> str:
        n = len(self.rows)
        if not n:
            return "no comparisons"
        return f"Holm over all {n} comparison{'s' if n > 1 else ''} of this report: every task, metric and pair"


def sample_metrics(sample: dict[str, Any]) -> dict[str, float]:
    """Per-item values, named as the log's metrics: exact_match/accuracy 1 or 0, continuous/mae the
    absolute error, label_probability and numeric_risk brier and label_accuracy (NaN: no value)."""
    out: dict[str, float] = {}
    for name, score in (sample.get("scores") or {}).items():
        if not isinstance(score, dict):
            continue
        value, meta = score.get("value"), score.get("metadata") or {}
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        if name in ("label_probability", "numeric_risk") and meta.get("y") is not None:
            y = int(meta["y"])
            out[f"{name}/brier"] = (number - y) ** 2 if number is not None else math.nan
            out[f"{name}/label_accuracy"] = float((number >= 0.5) == (y == 1)) if number is not None else math.nan
        elif name == "continuous":
            out[f"{name}/mae"] = number if number is not None else math.nan
        elif isinstance(value, str) and value in INSPECT_VALUES:
            out[f"{name}/accuracy"] = INSPECT_VALUES[value]
        elif number is not None:
            out[f"{name}/mean"] = number
    return out


def _cluster(sample: dict[str, Any], records: list[dict[str, Any]]) -> Any:
    meta = sample.get("metadata") or {}
    if meta.get("cluster") is not None:
        return meta["cluster"]
    i = sample.get("id")
    if isinstance(i, int) and 0 <= i < len(records):
        rec = records[i]
        for source in (rec, rec.get("meta") if isinstance(rec.get("meta"), dict) else {}):
            if source.get("cluster") is not None:
                return source["cluster"]
    return None


def setting_of(grid: dict[str, Any]) -> str:
    """A grid point without its seed, as text: the setting that seeds replicate."""
    return json.dumps({k: v for k, v in (grid or {}).items() if k != REPLICATE_KEY}, sort_keys=True)


def item_rows(plan: Plan, root: Path) -> list[dict[str, Any]]:
    """One row per (eval node, metric, sample id): the item's value averaged over inspect's epochs."""
    from cruijff.results.report_groups import _records, _task_config, scored_evaluations

    rows = []
    for n, log, samples in scored_evaluations(plan, root):
        config = _task_config(root / n.dir)
        records = _records(config) if config.get("data") else []
        a = n.attrs
        grid = a.get("grid") or {}
        base = {"node": n.id, "kind": n.kind, "run": a.get("run"), "model": a.get("model"), "task": a.get("task"),
                "eval_dataset": a.get("eval_dataset", a.get("dataset")),
                "epoch": a.get("epoch", -1) if n.kind == EVAL else -1,
                "setting": setting_of(grid) if n.kind == EVAL else None, "seed": grid.get(REPLICATE_KEY),
                "log": log.path}
        values: dict[tuple[str, Any], list[float]] = {}
        clusters: dict[Any, Any] = {}
        for s in samples:
            clusters[s.get("id")] = _cluster(s, records)
            for metric, v in sample_metrics(s).items():
                values.setdefault((metric, s.get("id")), []).append(v)
        for (metric, item), vs in values.items():
            finite = [v for v in vs if not math.isnan(v)]
            rows.append({**base, "metric": metric, "item": item, "cluster": clusters.get(item),
                         "value": sum(finite) / len(finite) if finite else math.nan})
    return rows


def _label(nodes: list[dict[str, Any]]) -> str:
    first = nodes[0]
    if first["kind"] == BASE_EVAL:
        return f"{first['model']} (base model)"
    if len(nodes) == 1:
        return f"{first['run']} @ epoch {first['epoch']}"
    grid = json.loads(first["setting"])
    text = ", ".join(f"{k}={v}" for k, v in grid.items()) or first["model"]
    return f"{text} ({len(nodes)} seeds) @ epoch {first['epoch']}"


def _matrix(items, side: list[str]):
    """(replicates x items) values of one side, items in a fixed order; None when item sets differ."""
    import numpy as np

    ids = sorted(items[side[0]], key=lambda i: (str(type(i)), i))
    for node in side[1:]:
        if set(items[node]) != set(ids):
            return None, ids
    return np.array([[items[node][i] for i in ids] for node in side]), ids


def _compare(items, clusters, a_nodes, b_nodes, info) -> dict[str, Any] | str:
    """One comparison row, or why it is refused."""
    import numpy as np

    from cruijff.results import paired

    ma, ids_a = _matrix(items, a_nodes)
    mb, ids_b = _matrix(items, b_nodes)
    if ma is None or mb is None:
        return "its seeds were scored on different items"
    if set(ids_a) != set(ids_b):
        only_a, only_b = set(ids_a) - set(ids_b), set(ids_b) - set(ids_a)
        return f"different items ({len(only_a)} only in a, {len(only_b)} only in b; matched by sample id)"
    keep = ~(np.isnan(ma).any(axis=0) | np.isnan(mb).any(axis=0))  # an item without a value on a side
    if not keep.any():
        return "no item has a value on both sides"
    ids = [i for i, k in zip(ids_a, keep) if k]
    cl = [clusters.get(i) for i in ids]
    cl = cl if all(c is not None for c in cl) and len(set(cl)) < len(cl) else None
    r = paired.compare_replicates(ma[:, keep], mb[:, keep], cl)
    return {**info, "n": r.n, "mean_a": r.mean_a, "mean_b": r.mean_b, "diff": r.diff, "ci_low": r.ci_low,
            "ci_high": r.ci_high, "p": r.p, "test": r.test, "clusters": r.clusters,
            "naive_ci_low": r.naive_ci_low, "naive_ci_high": r.naive_ci_high}


def comparisons(rows: list[dict[str, Any]]) -> Comparisons:
    """Vs base model (each setting at each epoch) and between settings one hyperparameter apart (at the
    last epoch both have), per task and metric; Holm over them all."""
    from cruijff.results import paired

    out = Comparisons()
    items: dict[tuple[str, str], dict[Any, float]] = {}  # (node, metric) -> item -> value
    clusters: dict[tuple[str, str], Any] = {}
    nodes: dict[str, dict[str, Any]] = {}
    for r in rows:
        items.setdefault((r["node"], r["metric"]), {})[r["item"]] = r["value"]
        clusters[(r["task"], r["eval_dataset"], r["item"])] = r["cluster"]
        nodes.setdefault(r["node"], r)
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    # replicate groups: (model, task, eval_dataset, setting, epoch) -> eval nodes (one per seed)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    bases: dict[tuple, list[dict[str, Any]]] = {}
    for node in nodes.values():
        key = (node["model"], node["task"], node["eval_dataset"])
        if node["kind"] == BASE_EVAL:
            bases.setdefault(key, []).append(node)
        elif node["kind"] == EVAL:  # a checkpoint's evaluation is in the scores, not compared
            groups.setdefault(key + (node["setting"], node["epoch"]), []).append(node)
    pairs = []
    for key, group in groups.items():
        if key[:3] in bases:
            pairs.append(("vs base", group, bases[key[:3]]))
    by_setting: dict[tuple, dict[str, dict[int, list]]] = {}
    for key, group in groups.items():
        by_setting.setdefault(key[:3], {}).setdefault(key[3], {})[key[4]] = group
    for settings in by_setting.values():
        names = list(settings)
        for i, s in enumerate(names):
            for t in names[i + 1:]:
                gs, gt = json.loads(s), json.loads(t)
                if set(gs) != set(gt) or sum(gs[k] != gt[k] for k in gs) != 1:
                    continue
                common = set(settings[s]) & set(settings[t])
                if common:
                    e = max(common)
                    pairs.append(("one setting apart", settings[t][e], settings[s][e]))
    for kind, a_side, b_side in pairs:
        task, dataset = a_side[0]["task"], a_side[0]["eval_dataset"]
        cl = {item: c for (tk, ds, item), c in clusters.items() if tk == task and ds == dataset}
        for metric in metrics:
            ka = [(n["node"], metric) for n in a_side]
            kb = [(n["node"], metric) for n in b_side]
            if not all(k in items for k in ka + kb):
                continue
            info = {"task": task, "metric": metric, "a": _label(a_side), "b": _label(b_side), "kind": kind,
                    "epoch": a_side[0]["epoch"], "a_nodes": tuple(n["node"] for n in a_side)}
            res = _compare({k[0]: items[k] for k in ka + kb}, cl, [k[0] for k in ka], [k[0] for k in kb], info)
            if isinstance(res, str):
                out.refused.append(f"{info['a']} vs {info['b']} ({task}, {metric}): {res}")
            else:
                out.rows.append(res)
    for r, p in zip(out.rows, paired.holm([r["p"] for r in out.rows])):
        r["p_holm"] = p
    return out


def write_comparisons(result: Comparisons, out: Path) -> dict[str, Path]:
    """comparisons.csv and comparisons.parquet (COLUMNS, then EXTRA)."""
    import pandas as pd

    df = pd.DataFrame(result.rows, columns=COLUMNS + EXTRA)
    paths = {"comparisons.csv": out / "comparisons.csv", "comparisons.parquet": out / "comparisons.parquet"}
    df.to_csv(paths["comparisons.csv"], index=False)
    df.to_parquet(paths["comparisons.parquet"], index=False)
    return paths


def against_base(result: Comparisons) -> list[dict[str, Any]]:
    """The vs-base comparisons of each setting at its last evaluated epoch (what a reader asks first)."""
    last: dict[tuple, dict[str, Any]] = {}
    for r in result.rows:
        if r["kind"] != "vs base":
            continue
        key = (r["task"], r["metric"], r["b"], r["a"].rsplit(" @ epoch ", 1)[0])
        if key not in last or r["epoch"] > last[key]["epoch"]:
            last[key] = r
    return list(last.values())


def fmt(v: float, digits: int = 3) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def p_text(p: float) -> str:
    """"p = 0.042", "p < 0.001"."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "= —"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def line(row: dict[str, Any]) -> str:
    """One comparison as a sentence-like line (what the demo and `cruijff report` print)."""
    return (f"{row['task']} {row['metric']}: {row['a']} {fmt(row['mean_a'])} vs {row['b']} {fmt(row['mean_b'])}; "
            f"difference {row['diff']:+.3f} [95% CI {fmt(row['ci_low'])}, {fmt(row['ci_high'])}], "
            f"p {p_text(row['p'])} (Holm p {p_text(row['p_holm'])}), n = {row['n']} items; {row['test']}")
