"""The report's scorer summaries: numeric answers, stated risks and label probabilities, each as
one table with its metrics in a fixed order and what they mean (cruijff_kit's summary_continuous
and risk summaries, from the same numbers the logs hold).

Pure: takes the report's long scores table (one row per node and "scorer/metric"), returns HTML.
"""

from __future__ import annotations

import html
from typing import Any

# scorer -> (title, metrics in order, how to read them)
SUMMARIES: dict[str, tuple[str, list[str], str]] = {
    "continuous": (
        "Numeric answers", ["mae", "rmse", "bias", "r2", "pred_std", "parse_rate"],
        "Errors of the parsed numbers. bias > 0: the model overestimates; r2 is empty when the targets "
        "are all equal; pred_std 0 means one number for every sample; parse_rate: answers holding a number."),
    "numeric_risk": (
        "Stated risks", ["label_accuracy", "brier", "ece", "confidence_ece", "auc", "parse_rate"],
        "A probability read from the answer. ece: positive-class calibration; confidence_ece: top-label "
        "calibration (10 right-closed bins, as scikit-learn's calibration_curve); answers without a "
        "probability in [0, 1] count only in parse_rate."),
    "label_probability": (
        "Label probabilities", ["label_accuracy", "brier", "ece", "confidence_ece", "auc", "summed", "floored",
                                "dropped"],
        "P(label) from the first token's top-k logprobs. summed: samples where several tokens spelled one "
        "label; floored: samples where a label was not in the top-k; dropped: samples left out (missing=drop)."),
}
ROW_KEYS = ["task", "run", "model", "epoch"]


def summaries_html(scores: Any) -> str:
    """One <h3> table per scorer of SUMMARIES present in scores (a pandas DataFrame); "" if none."""
    if scores is None or scores.empty:
        return ""
    from cruijff.results.report.html import frame_html

    parts = []
    split = scores["metric"].str.split("/", n=1, expand=True)
    for scorer, (title, metrics, note) in SUMMARIES.items():
        sub = scores[split[0] == scorer].assign(short=split[1][split[0] == scorer])
        sub = sub.assign(run=sub["run"].fillna("(base model)"), epoch=sub["epoch"].fillna(-1))
        if sub.empty:
            continue
        table = sub.pivot_table(index=ROW_KEYS, columns="short", values="value", aggfunc="first", dropna=False)
        table = table.reindex(columns=[m for m in metrics if m in table.columns])
        parts.append(f"<h3>{html.escape(title)} ({html.escape(scorer)})</h3><p>{html.escape(note)}</p>"
                     + frame_html(table, drop_empty=False, float_format=lambda v: f"{v:.4f}"))
    return ("<h2>Scorer summaries</h2>\n" + "\n".join(parts)) if parts else ""
