"""Heterogeneity: a binary task's scores per subgroup, and how close each model came to the best possible.

For every evaluation with a successful log, each sample's P(positive label) and true label (from the
`label_probability` scorer, or right/wrong from `exact_match` when there is no probability) are
joined to the record it came from (sample id = the record's position in the evaluated split, see
cruijff/tasks/_dataset.py) through the node's task_config.yaml. The record's grouping fields are its
`meta` entries (the tabular generator's raw features, the organisms' length and distribution) and
any other keys besides input/output/messages. Numbers with more than MAX_NUMBER_GROUPS distinct
values are cut into quartile bins; text fields with more than MAX_GROUPS values (ids) are left out.

Per (evaluation, field, group): n, accuracy with a 95% Wilson interval, and Brier, ECE and AUC with
95% percentile-bootstrap intervals (BOOTSTRAP resamples of the group, a fixed seed: the same report
twice gives the same numbers). Tables: groups.csv; plots: plots/groups_<task>_<field>.png; and
best_possible.csv: accuracy next to the dataset's Bayes-optimal accuracy (from `<data>.meta.json`
written by the generators), where the dataset has one.
"""

from __future__ import annotations

import html
import json
import math
import zipfile
from pathlib import Path
from typing import Any

from cruijff.plan import CHECKPOINT_EVAL, EVAL, EVAL_KINDS, Plan

MAX_GROUPS = 12
MAX_NUMBER_GROUPS = 5
BOOTSTRAP = 1000
SEED = 0
Z95 = 1.959963984540054
GROUP_COLUMNS = ["node", "kind", "run", "model", "eval_dataset", "epoch", "task", "field", "group", "n",
                 "accuracy", "accuracy_low", "accuracy_high", "brier", "brier_low", "brier_high",
                 "ece", "ece_low", "ece_high", "auc", "auc_low", "auc_high"]
BEST_COLUMNS = ["node", "run", "model", "eval_dataset", "split", "epoch", "task", "n", "accuracy",
                "bayes_optimal_accuracy", "gap"]
ALL = "(all)"


# ---- samples -------------------------------------------------------------------------------------

def _log_samples(log_path: str) -> list[dict[str, Any]]:
    """The samples of an inspect log (.eval zip or .json), as dicts."""
    path = Path(log_path)
    if path.suffix == ".json":
        try:
            return list(json.loads(path.read_text(encoding="utf-8")).get("samples") or [])
        except (OSError, ValueError):
            return []
    from cruijff.results.scores import _member  # zstd-aware reader of one zip member

    out = []
    try:
        with zipfile.ZipFile(path) as zf:
            for name in sorted(n for n in zf.namelist() if n.startswith("samples/") and n.endswith(".json")):
                out.append(json.loads(_member(zf, path, name)))
    except (zipfile.BadZipFile, OSError, ValueError):
        return []
    return out


def sample_outcome(sample: dict[str, Any]) -> dict[str, Any] | None:
    """{id, p, y, correct} of one sample: p/y from label_probability, else correct from exact_match."""
    scores = sample.get("scores") or {}
    out: dict[str, Any] = {"id": sample.get("id"), "p": None, "y": None, "correct": None}
    lp = scores.get("label_probability")
    if isinstance(lp, dict) and isinstance(lp.get("value"), (int, float)):
        y = (lp.get("metadata") or {}).get("y")
        if y is not None:
            out["p"], out["y"] = float(lp["value"]), int(y)
            out["correct"] = (out["p"] >= 0.5) == (out["y"] == 1)
    if out["correct"] is None:
        em = scores.get("exact_match")
        if isinstance(em, dict) and em.get("value") in ("C", "I"):
            out["correct"] = em["value"] == "C"
    return out if out["correct"] is not None else None


def _task_config(node_dir: Path) -> dict[str, Any]:
    path = node_dir / "task_config.yaml"
    if not path.is_file():
        return {}
    from ruamel.yaml import YAML

    config = YAML(typ="safe").load(path.read_text(encoding="utf-8")) or {}
    if "data_path" in config and "data" not in config:  # a cruijff_kit task's arguments (instruct_json data)
        config = {**config, "data": config["data_path"], "format": "instruct_json"}
    return config


def _records(config: dict[str, Any]) -> list[dict[str, Any]]:
    from cruijff.data.formats import DataFormatError, read_split

    try:
        return read_split(config["data"], config.get("format"), config.get("split", "test"))
    except (DataFormatError, KeyError, OSError):
        return []


def group_fields(record: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in record.items() if k not in ("input", "output", "messages", "meta")}
    meta = record.get("meta")
    if isinstance(meta, dict):
        fields.update(meta)
    return {k: v for k, v in fields.items() if isinstance(v, (str, int, float, bool))}


def _number(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def group_labels(values: list[Any]) -> list[str] | None:
    """A group label per value: the value itself, or a quartile bin for many distinct numbers."""
    distinct = set(map(str, values))
    if len(distinct) <= 1:
        return None
    nums = [_number(v) for v in values]
    numeric = not any(n is None for n in nums)
    if len(distinct) <= (MAX_NUMBER_GROUPS if numeric else MAX_GROUPS):
        return [str(v) for v in values]
    if not numeric:
        return None  # many distinct texts: an id, not a group
    import numpy as np

    edges = sorted(set(np.quantile(np.asarray(nums), [0, 0.25, 0.5, 0.75, 1.0]).tolist()))
    labels = []
    for n in nums:
        i = max(0, min(len(edges) - 2, int(np.searchsorted(edges, n, side="right")) - 1))
        labels.append(f"[{edges[i]:g}, {edges[i + 1]:g}{']' if i == len(edges) - 2 else ')'}")
    return labels


# ---- statistics ----------------------------------------------------------------------------------

def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    phat = k / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def replicates(pa, ya, idx, n_bins: int | None = None) -> dict[str, Any]:
    """Brier, ECE and AUC of every resample (rows of idx) at once: vectorised forms of
    cruijff.tasks._metrics.brier / ece (its bin_ids, so the same bins) and rank_auc, pinned equal by a test."""
    import numpy as np

    from cruijff.tasks._metrics import ECE_BINS, bin_ids

    n_bins = n_bins or ECE_BINS
    P, Y = pa[idx], ya[idx]
    brier = ((P - Y) ** 2).mean(axis=1)
    bins = bin_ids(P.ravel(), n_bins).reshape(P.shape)
    ece = np.zeros(len(idx))
    for b in range(n_bins):
        m = bins == b  # per bin, count x |mean(y) - mean(p)| = |sum(y) - sum(p)|
        ece += np.abs((Y * m).sum(axis=1) - (P * m).sum(axis=1))
    ece /= idx.shape[1]
    auc = np.array([rank_auc(P[i], Y[i]) for i in range(len(idx))])
    return {"brier": brier, "ece": ece, "auc": auc}


def bootstrap(p: list[float], y: list[int], *, resamples: int = BOOTSTRAP, seed: int = SEED
              ) -> dict[str, tuple[float, float]]:
    """95% percentile-bootstrap interval of Brier, ECE and AUC: the same resamples for all three."""
    import numpy as np

    pa, ya = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(1, len(pa)))  # bound the resample matrix's memory
    parts: dict[str, list] = {"brier": [], "ece": [], "auc": []}
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        for name, values in replicates(pa, ya, rng.integers(0, len(pa), (k, len(pa)))).items():
            parts[name].append(values)
        done += k
    out = {}
    for name, values in parts.items():
        arr = np.concatenate(values)
        if np.isnan(arr).all():
            out[name] = (float("nan"), float("nan"))
        else:
            low, high = np.nanpercentile(arr, [2.5, 97.5])
            out[name] = (float(low), float(high))
    return out


def rank_auc(p, y) -> float:
    """ROC AUC from average ranks (ties count one half): equals cruijff.tasks._metrics.auc, which is
    quadratic in the group size, in n log n, for the bootstrap's thousand resamples."""
    import numpy as np

    pa, ya = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    n1 = int((ya == 1).sum())
    n0 = len(ya) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inverse, counts = np.unique(pa, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    return float((ranks[ya == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def group_scores(outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    from cruijff.tasks import _metrics

    n = len(outcomes)
    k = sum(bool(o["correct"]) for o in outcomes)
    low, high = wilson(k, n)
    row: dict[str, Any] = {"n": n, "accuracy": k / n if n else float("nan"), "accuracy_low": low,
                           "accuracy_high": high}
    probs = [o for o in outcomes if o["p"] is not None]
    p, y = [o["p"] for o in probs], [o["y"] for o in probs]
    intervals = bootstrap(p, y) if probs else {}
    for name, fn in (("brier", _metrics.brier), ("ece", _metrics.ece), ("auc", _metrics.auc)):
        lo, hi = intervals.get(name, (None, None))
        row.update({name: fn(p, y) if probs else None, f"{name}_low": lo, f"{name}_high": hi})
    return row


# ---- collecting ----------------------------------------------------------------------------------

def scored_evaluations(plan: Plan, root: Path):
    """(node, its last successful log, that log's samples) for each evaluation that has samples."""
    for n in plan.nodes:
        if n.kind not in EVAL_KINDS:
            continue
        log = _best_success(root / n.dir)
        samples = _log_samples(log.path) if log is not None else []
        if samples:
            yield n, log, samples


def _best_success(node_dir: Path):
    from cruijff.results.scores import read_scores

    for s in reversed(read_scores(node_dir / "logs")):
        if s.status == "success":
            return s
    return None


def bayes_accuracy(data: str, split: str) -> float | None:
    """The generator's Bayes-optimal accuracy for a split (realised if recorded, else expected)."""
    from cruijff.data.generate.tabular import metadata_path

    path = metadata_path(data)
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    by_split = meta.get("bayes_optimal_accuracy_by_split") or {}
    value = by_split.get(split, meta.get("bayes_optimal_accuracy"))
    return float(value) if isinstance(value, (int, float)) else None


def collect(plan: Plan, root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(groups rows, best-possible rows) for every evaluation with a successful log."""
    groups, best = [], []
    for n, log, samples in scored_evaluations(plan, root):
        outcomes = {}
        for s in samples:
            o = sample_outcome(s)
            if o is not None and s.get("epoch", 1) == 1:  # inspect's own epochs: the first one
                outcomes[o["id"]] = o
        if not outcomes:
            continue
        a = n.attrs
        base = {"node": n.id, "kind": n.kind, "run": a.get("run"), "model": a.get("model"),
                "eval_dataset": a.get("eval_dataset", a.get("dataset")),
                "epoch": a.get("epoch", -1) if n.kind == EVAL else -1, "task": a.get("task")}
        config = _task_config(root / n.dir)
        ordered = [outcomes[i] for i in sorted(outcomes, key=lambda i: (str(type(i)), i))]
        groups.append({**base, "field": ALL, "group": ALL, **group_scores(ordered)})
        split = config.get("split", "test")
        bayes = bayes_accuracy(config["data"], split) if config.get("data") else None
        if bayes is not None:
            acc = groups[-1]["accuracy"]
            best.append({**{k: base[k] for k in ("node", "run", "model", "eval_dataset", "epoch", "task")},
                         "split": split, "n": len(ordered), "accuracy": acc, "bayes_optimal_accuracy": bayes,
                         "gap": bayes - acc})
        records = _records(config) if config else []
        joined = [(o, group_fields(records[o["id"]])) for o in ordered
                  if isinstance(o["id"], int) and 0 <= o["id"] < len(records)]
        fields = list(dict.fromkeys(k for _, f in joined for k in f))
        for field in fields:
            labels = group_labels([f.get(field) for _, f in joined])
            if labels is None:
                continue
            by: dict[str, list] = {}
            for (o, _), lab in zip(joined, labels):
                by.setdefault(lab, []).append(o)
            for lab in sorted(by, key=_group_key):
                groups.append({**base, "field": field, "group": lab, **group_scores(by[lab])})
    return groups, best


def _group_key(label: str):
    x = _number(label.strip("[]()").split(",")[0])
    return (0, x, label) if x is not None else (1, 0.0, label)


# ---- tables, plots, HTML ---------------------------------------------------------------------------

def _plots(df, plots: Path) -> list[Path]:
    from cruijff.results.report.plots import pyplot, safe_name, save_figure

    plt = pyplot()
    out = []
    sub_all = df[df["field"] != ALL]
    for (task, field), grp in sub_all.groupby(["task", "field"], sort=True):
        groups = list(dict.fromkeys(grp["group"]))
        series = list(dict.fromkeys(grp["node"]))
        has_brier = grp["brier"].notna().any()
        fig, axes = plt.subplots(1, 2 if has_brier else 1, figsize=(11 if has_brier else 6.5, 4), squeeze=False)
        width = 0.8 / max(1, len(series))
        for panel, (metric, label) in enumerate([("accuracy", "accuracy (95% Wilson)"),
                                                  ("brier", "Brier (95% bootstrap; lower is better)")]
                                                 [: 2 if has_brier else 1]):
            ax = axes[0][panel]
            for i, node in enumerate(series):
                rows = grp[grp["node"] == node].set_index("group")
                xs, ys, lo, hi = [], [], [], []
                for j, g in enumerate(groups):
                    if g in rows.index and rows.loc[g, metric] == rows.loc[g, metric]:
                        xs.append(j - 0.4 + width * (i + 0.5))
                        ys.append(rows.loc[g, metric])
                        lo.append(max(0.0, ys[-1] - rows.loc[g, f"{metric}_low"]))
                        hi.append(max(0.0, rows.loc[g, f"{metric}_high"] - ys[-1]))
                r0 = rows.iloc[0]
                name = f"{r0['run'] or r0['model'] + ' (base)'} @ epoch {r0['epoch']}" if r0["kind"] == EVAL \
                    else f"{r0['model']} ({'checkpoint' if r0['kind'] == CHECKPOINT_EVAL else 'base'})"
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o", capsize=3, color=f"C{i % 10}", label=name)
            ax.set_xlim(-0.6, len(groups) - 0.4)
            if metric == "accuracy":
                ax.set_ylim(-0.02, 1.02)
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([f"{g}\n(n={int(grp[grp['group'] == g]['n'].max())})" for g in groups],
                               fontsize=7, rotation=0 if len(groups) <= 6 else 30)
            ax.set_ylabel(label, fontsize=8)
            ax.set_xlabel(field)
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{task}: scores by {field}", fontsize=9)
        out.append(save_figure(fig, plots / f"groups_{safe_name(task)}_{safe_name(field)}.png"))
    return out


def write_sections(plan: Plan, root: Path, out: Path) -> tuple[dict[str, Path], list[Path], str]:
    """groups.csv, best_possible.csv, the per-group plots, and the report's two sections."""
    import pandas as pd

    rows, best = collect(plan, root)
    df = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    best_df = pd.DataFrame(best, columns=BEST_COLUMNS)
    tables = {}
    for name, frame in (("groups", df), ("best_possible", best_df)):
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False)
        tables[f"{name}.csv"] = path
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(df, plots_dir) if not df.empty else []
    from cruijff.results.report.html import frame_html

    fmt = {"float_format": lambda v: f"{v:.3f}", "index": False}
    parts = []
    if not best_df.empty:
        parts.append("<h2>Best possible</h2><p>Accuracy next to the dataset's Bayes-optimal accuracy "
                     "(recorded by its generator); gap = best possible - reached.</p>"
                     + frame_html(best_df, **fmt))
    if not df.empty:
        parts.append("<h2>Scores by group</h2><p>Accuracy with 95% Wilson intervals; Brier, ECE and AUC "
                     f"with 95% percentile-bootstrap intervals ({BOOTSTRAP} resamples, seed {SEED}). "
                     f"Fields: {html.escape(', '.join(sorted(set(df['field']) - {ALL})) or 'none')}.</p>"
                     + "<details><summary>The table (one row per evaluation, field and group)</summary>"
                     + frame_html(df.drop(columns=["kind"]), **fmt) + "</details>")
    return tables, plots, "".join(parts)
