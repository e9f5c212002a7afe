"""The report's plots (PNG): scores by hyperparameter, scores by epoch, training and validation losses.

matplotlib is imported inside the functions (cruijff[eval]); `pyplot` and `save_figure` are shared
with the per-group plots of cruijff.results.report_groups.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from cruijff.plan import BASE_EVAL, EVAL, Plan
from cruijff.results.report.collect import ReportError, _hp_column, varied_hyperparameters
from cruijff.results.report.tables import setting_text

DPI = 110


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on a cluster node)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError("cruijff report needs matplotlib", hint="pip install 'cruijff[eval]'") from None
    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay a figure out, write it as PNG and close it (pyplot keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def headline_metric(scores, task: str) -> str | None:
    """The metric shown for a task: the logs' first metric (inspect's headline), most common wins."""
    sub = scores[scores["task"] == task]
    if sub.empty:
        return None
    firsts = sub.groupby("node", sort=False)["metric"].first()
    return Counter(firsts).most_common(1)[0][0]


def is_spread(metric: str) -> bool:
    """A metric that measures another's uncertainty (inspect's stderr, std), not a score."""
    return metric.rsplit("/", 1)[-1] in ("stderr", "std", "var")


def safe_name(name) -> str:
    """A task or field name as a file-name part."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _numeric(values) -> bool:
    try:
        [float(v) for v in values]
        return True
    except (TypeError, ValueError):
        return False


def _plot_scores_by_hp(scores, plan: Plan, plots: Path, plt) -> list[Path]:
    """Per task: one panel per (metric, varied hyperparameter); each run at its last evaluated epoch.

    Dots are single runs; where other hyperparameters vary too, several runs share an x and the
    line is their mean, which the panel says (an unlabelled mean hides the other axes).
    """
    out = []
    hps = varied_hyperparameters(plan)
    if not hps:
        return out
    for task in sorted(scores["task"].dropna().unique()):
        sub = scores[scores["task"] == task]
        tuned = sub[sub["kind"] == EVAL]
        if tuned.empty:
            continue
        metrics = [m for m in dict.fromkeys(sub["metric"]) if not is_spread(m)]  # scores, not their stderr
        # each run at its last evaluated epoch
        last_epoch = tuned.groupby("run")["epoch"].transform("max")
        last = tuned[tuned["epoch"] == last_epoch]
        base = sub[sub["kind"] == BASE_EVAL]
        fig, axes = plt.subplots(len(metrics), len(hps), figsize=(max(6.5, 4.5 * len(hps)), 0.8 + 3.2 * len(metrics)),
                                 squeeze=False)
        for r, metric in enumerate(metrics):
            rows = last[last["metric"] == metric]
            for c, hp in enumerate(hps):
                ax = axes[r][c]
                averaged = _plot_hp_panel(ax, rows, base[base["metric"] == metric], hp)
                others = [h for h in hps if h != hp]
                ax.set_title(f"mean over {', '.join(others)}" if averaged else "one run per point", fontsize=8)
                ax.set_xlabel(hp)
                ax.set_ylabel(metric)
                ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{task}: every score by hyperparameter\neach run at its last evaluated epoch; "
                     "dashed: base model\ndots: single runs; line: the mean of the runs at each value",
                     fontsize=9)
        out.append(save_figure(fig, plots / f"score_by_hyperparameter_{safe_name(task)}.png"))
    return out


def _plot_hp_panel(ax, rows, base, hp: str) -> bool:
    """Draw one panel; True when some x held more than one run (the line is a mean)."""
    col = _hp_column(hp)
    averaged = False
    for i, (model, grp) in enumerate(rows.groupby("model")):
        color = f"C{i}"
        xs = list(grp[col])
        numeric = _numeric(xs)
        grp = grp.assign(x=[float(x) for x in xs] if numeric else [str(x) for x in xs])
        counts = grp.groupby("x")["value"].count()
        averaged = averaged or bool((counts > 1).any())
        agg = grp.groupby("x")["value"].mean()
        if numeric:
            agg = agg.sort_index()
        ax.plot(list(grp["x"]), list(grp["value"]), "o", color=color, alpha=0.35, markersize=4)
        ax.plot(list(agg.index), agg.values, "o-" if numeric else "s", color=color, label=model)
        if numeric and len(agg) > 1 and min(agg.index) > 0 and max(agg.index) / min(agg.index) >= 10:
            ax.set_xscale("log")
        if numeric and len(agg) <= 12:  # ticks at the grid's values, written as in the manifest
            ax.set_xticks(list(agg.index), [setting_text(v) for v in agg.index])
            ax.minorticks_off()
        for v in base[base["model"] == model]["value"]:
            ax.axhline(v, color=color, linestyle="--", linewidth=1, label=f"{model} (base)")
    return averaged


def _plot_scores_by_epoch(scores, plots: Path, plt) -> list[Path]:
    from matplotlib.ticker import MaxNLocator

    out = []
    for task in sorted(scores["task"].dropna().unique()):
        metric = headline_metric(scores, task)
        sub = scores[(scores["task"] == task) & (scores["metric"] == metric)]
        tuned, base = sub[sub["kind"] == EVAL], sub[sub["kind"] == BASE_EVAL]
        if tuned.empty and base.empty:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4))
        models = sorted(set(sub["model"].dropna()))
        for run, grp in tuned.groupby("run"):
            grp = grp.sort_values("epoch")
            model = grp["model"].iloc[0]
            xs, ys = list(grp["epoch"].astype(int)), list(grp["value"])
            ax.plot(xs, ys, "o-", label=run, linewidth=1)
        for model in models:
            for v in base[base["model"] == model]["value"]:
                ax.axhline(v, color="grey", linestyle="--", linewidth=1)
                ax.annotate(f"base model {model}", (0, v), xycoords=("axes fraction", "data"), fontsize=7,
                            xytext=(3, 3), textcoords="offset points", color="grey")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{task}: {metric} by epoch", fontsize=9)
        ax.grid(alpha=0.3)
        if not tuned.empty:
            ax.legend(fontsize=7)
        out.append(save_figure(fig, plots / f"score_by_epoch_{safe_name(task)}.png"))
    return out


def _plot_losses(losses, plots: Path, plt) -> list[Path]:
    if losses.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (run, grp) in enumerate(losses.groupby("run")):
        color = f"C{i % 10}"
        train = grp[grp["split"] == "train"].sort_values("step")
        val = grp[grp["split"] == "val"].sort_values("step")
        if not train.empty:
            ax.plot(train["step"], train["loss"], "-", color=color, linewidth=1, label=f"{run} train")
        if not val.empty:
            ax.plot(val["step"], val["loss"], "o--", color=color, linewidth=1, label=f"{run} val")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("training (solid) and validation (dashed) loss", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return [save_figure(fig, plots / "losses.png")]


def draw_plots(scores, losses, plan: Plan, out: Path) -> list[Path]:
    """Every plot of the report under out/plots/."""
    plt = pyplot()
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    paths = []
    if not scores.empty:
        paths += _plot_scores_by_hp(scores, plan, plots, plt)
        paths += _plot_scores_by_epoch(scores, plots, plt)
    paths += _plot_losses(losses, plots, plt)
    return paths

