"""The numeric scorers through a real inspect-ai evaluation (fixed answers from a solver: no model,
no network), read back by cruijff.results.scores: the logged metrics equal the pure functions."""

from __future__ import annotations

import math

import pytest

from cruijff.results import scores
from cruijff.tasks import _metrics

pytestmark = pytest.mark.inspect

AGES = [("42", "40"), ("Age: 35.", "30"), ("not sure", "50"), ("1,000", "990")]
RISKS = [("0.9", "1"), ("20%", "1"), ("0.5", "0"), ("high", "0"), ("1.0", "1")]


def run(tmp_path, rows, scorer, name):
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ModelOutput
    from inspect_ai.solver import solver

    answers = {f"q{i}": a for i, (a, _) in enumerate(rows)}

    @solver
    def answer():
        async def solve(state, generate):
            state.output = ModelOutput.from_content("mockllm/model", answers[state.input_text])
            return state

        return solve

    task = Task(dataset=MemoryDataset([Sample(input=f"q{i}", target=t) for i, (_, t) in enumerate(rows)]),
                solver=answer(), scorer=scorer, name=name)
    [log] = inspect_eval(task, model="mockllm/model", log_dir=str(tmp_path / name), display="none")
    assert log.status == "success", log.error
    return scores.latest(tmp_path / name)


def test_continuous_scorer_in_a_real_eval(tmp_path):
    from cruijff.tasks import continuous

    got = run(tmp_path, AGES, continuous(), "ages").metrics
    expected = _metrics.regression([42, 35, 1000], [40, 30, 990])
    for key in ("mae", "rmse", "bias", "r2", "pred_std"):
        assert got[f"continuous/{key}"] == pytest.approx(expected[key]), key
    assert got["continuous/parse_rate"] == 0.75


def test_numeric_risk_scorer_in_a_real_eval(tmp_path):
    from cruijff.tasks import numeric_risk

    got = run(tmp_path, RISKS, numeric_risk(), "risks").metrics
    p, y = [0.9, 0.2, 0.5, 1.0], [1, 1, 0, 1]
    assert got["numeric_risk/ece"] == pytest.approx(_metrics.ece(p, y))
    assert got["numeric_risk/confidence_ece"] == pytest.approx(_metrics.confidence_ece(p, y))
    assert got["numeric_risk/brier"] == pytest.approx(_metrics.brier(p, y))
    assert got["numeric_risk/parse_rate"] == 0.8
    assert not math.isnan(got["numeric_risk/auc"])


def test_label_rule_counts_survive_a_real_eval(tmp_path):
    """A dropped sample is not NaN (inspect would hide it from every metric, its count included)."""
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ModelOutput
    from inspect_ai.model._model_output import Logprob, Logprobs, TopLogprob
    from inspect_ai.solver import solver

    from cruijff.tasks import label_probability

    tops = {"q0": {"1": 0.5, "Ġ1": 0.2, "0": 0.1}, "q1": {"0": 0.6, "z": 0.2}, "q2": {"1": 0.7, "0": 0.2}}

    @solver
    def answer():
        async def solve(state, generate):
            t = [TopLogprob(token=k, logprob=math.log(v)) for k, v in tops[state.input_text].items()]
            lp = Logprobs(content=[Logprob(token=t[0].token, logprob=t[0].logprob, top_logprobs=t)])
            state.output = ModelOutput(model="m", choices=[
                ChatCompletionChoice(message=ChatMessageAssistant(content=t[0].token), logprobs=lp)])
            return state

        return solve

    samples = [Sample(input="q0", target="1"), Sample(input="q1", target="0"), Sample(input="q2", target="0")]
    task = Task(dataset=MemoryDataset(samples), solver=answer(), scorer=label_probability(missing="drop"))
    [log] = inspect_eval(task, model="mockllm/model", log_dir=str(tmp_path / "l"), display="none")
    assert log.status == "success", log.error
    got = scores.latest(tmp_path / "l").metrics
    assert (got["label_probability/summed"], got["label_probability/floored"],
            got["label_probability/dropped"]) == (1.0, 1.0, 1.0)
    p = [0.7 / 0.8, 0.7 / 0.9]  # q0 (summed), q2; q1 dropped
    assert got["label_probability/brier"] == pytest.approx(_metrics.brier(p, [1, 0]))
