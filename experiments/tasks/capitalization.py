"""Capitalization: the model must return the input word capitalised (Apple for apple).

Run: inspect eval experiments/tasks/capitalization.py@capitalization -T data=/abs/words.json ...
"""

from inspect_ai import Task, task
from inspect_ai.scorer import includes

from cruijff.tasks import exact_match, instruct_task


@task
def capitalization(data: str, format: str = "instruct_json", split: str = "test",
                   template: str | None = None, system: str | None = None,
                   max_tokens: int = 16, limit: int | None = None) -> Task:
    """Exact match (case-sensitive) and includes (the answer contains the target, case-sensitive)."""
    return instruct_task(
        data, format=format, split=split, template=template, system=system,
        scorers=[exact_match(), includes(ignore_case=False)], max_tokens=max_tokens, limit=limit,
    )
