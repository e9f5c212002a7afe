"""Capitalization: the model must return the input word capitalised (Apple for apple).

Run: inspect eval experiments/tasks/capitalization.py@capitalization -T data=/abs/words.json ...
"""

from inspect_ai import Task, task
from inspect_ai.scorer import includes

from cruijff.tasks import exact_match, instruct_task


@task
def capitalization(data: str, format: str = "instruct_json", split: str = "test",
                   template: str | None = None, system: str | None = None,
                   max_tokens: int = 16, limit: int | None = None, ignore_punctuation: bool = False) -> Task:
    """Exact match (case-sensitive) and includes (the answer contains the target, case-sensitive).

    Exact match is strict ("Apple." is wrong) unless ignore_punctuation (-T ignore_punctuation=true,
    or the manifest's task args), which compares as cruijff_kit's match(location="exact") does.
    """
    return instruct_task(
        data, format=format, split=split, template=template, system=system,
        scorers=[exact_match(ignore_punctuation=ignore_punctuation), includes(ignore_case=False)],
        max_tokens=max_tokens, limit=limit,
    )
