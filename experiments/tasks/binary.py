"""A binary answer ("1" or "0"): exact match of the greedy answer and the model's belief P("1").

Used by the research-kit experiments (census income, model organisms). P(label) is read from the
first answer token's top-k logprobs and normalised over the two labels (see cruijff.tasks); the
per-sample P("1") is what `cruijff report`'s per-group table (accuracy, Brier, ECE, AUC) scores.
"""

from inspect_ai import Task, task

from cruijff.tasks import exact_match, instruct_task, label_probability


@task
def binary(data: str, format: str = "instruct_json", split: str = "test",
           template: str | None = None, system: str | None = None,
           positive: str = "1", negative: str = "0", top_logprobs: int = 20,
           limit: int | None = None) -> Task:
    """Accuracy of the answer; label accuracy, Brier, ECE (10 equal-width bins) and AUC of P(positive)."""
    return instruct_task(
        data, format=format, split=split, template=template, system=system,
        scorers=[exact_match(), label_probability(labels=(positive, negative), positive=positive)],
        max_tokens=4, limit=limit, logprobs=True, top_logprobs=top_logprobs,
    )
