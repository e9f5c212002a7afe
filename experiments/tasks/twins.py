"""Twin zygosity: from a pair's traits, answer 1 (monozygotic) or 0 (dizygotic).

Scores the greedy answer (exact match) and the model's calibrated belief: P(label) is read from the
first answer token's top-k logprobs and normalised over the two labels (see cruijff.tasks).
"""

from inspect_ai import Task, task

from cruijff.tasks import exact_match, instruct_task, label_probability


@task
def zygosity(data: str, format: str = "instruct_json", split: str = "test",
             template: str | None = None, system: str | None = None,
             positive: str = "1", negative: str = "0", top_logprobs: int = 20,
             limit: int | None = None) -> Task:
    """Accuracy of the answer; label accuracy, Brier, ECE (positive-class and top-label, scikit-learn's
    bins) and AUC of P(positive), and how many samples each label rule touched."""
    return instruct_task(
        data, format=format, split=split, template=template, system=system,
        scorers=[exact_match(), label_probability(labels=(positive, negative), positive=positive)],
        max_tokens=4, limit=limit, logprobs=True, top_logprobs=top_logprobs,
    )
