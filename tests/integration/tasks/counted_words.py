"""A test task: the capitalization task whose generations are counted and paced.

Samples are generated one at a time (a lock around generate), each after CRUIJFF_TEST_SAMPLE_SECONDS,
and each finished generation appends its sample id to the file CRUIJFF_TEST_GENERATIONS names: a
test kills the evaluation after k samples and counts what the next run generates again. The
scorer gives a value that varies with the output (its length's parity), so an interrupted run's
score can be compared with an uninterrupted one's (the tiny model's answers are never right).
"""

import asyncio
import os

from inspect_ai import task
from inspect_ai.scorer import Score, Target, mean, scorer
from inspect_ai.solver import TaskState, generate, solver

from cruijff.tasks import instruct_task

_LOCK = asyncio.Lock()


@solver
def counted_generate():
    gen = generate()

    async def solve(state: TaskState, g):
        async with _LOCK:
            await asyncio.sleep(float(os.environ.get("CRUIJFF_TEST_SAMPLE_SECONDS", "0")))
            state = await gen(state, g)
        path = os.environ.get("CRUIJFF_TEST_GENERATIONS")
        if path:
            with open(path, "a") as f:
                f.write(f"{state.sample_id}\n")
        return state

    return solve


@scorer(metrics=[mean()])
def output_parity():
    async def score(state: TaskState, target: Target) -> Score:
        return Score(value=len(state.output.completion) % 2, answer=state.output.completion)

    return score


@task
def counted_words(data: str, format: str = "instruct_json", split: str = "test", template: str | None = None,
                  system: str | None = None, max_tokens: int = 8):
    t = instruct_task(data, format=format, split=split, template=template, system=system,
                      scorers=[output_parity()], max_tokens=max_tokens)
    t.solver = counted_generate()
    return t
