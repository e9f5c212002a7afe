"""Calibration metrics on hand-computed cases; label probabilities; scorers; task samples."""

from __future__ import annotations

import importlib

import asyncio
import json
import math

import numpy as np
import pytest

from cruijff.tasks import _metrics


# ---- metrics ---------------------------------------------------------------------------------

def test_brier_hand_computed():
    # ((0.8-1)^2 + (0.3-0)^2) / 2 = (0.04 + 0.09) / 2
    assert _metrics.brier([0.8, 0.3], [1, 0]) == pytest.approx(0.065)
    assert _metrics.brier([1.0, 0.0], [1, 0]) == 0.0
    assert _metrics.brier([0.0], [1]) == 1.0


def test_ece_hand_computed_with_ten_equal_width_bins():
    p = [0.1, 0.15, 0.8, 0.85, 0.95]
    y = [0, 1, 1, 1, 0]
    # bin [0.1,0.2): mean p .125, mean y .5 → .375 (2 samples); bin [0.8,0.9): .825 vs 1 → .175 (2);
    # bin [0.9,1.0]: .95 vs 0 → .95 (1).  (2*.375 + 2*.175 + .95) / 5 = 0.41
    assert _metrics.ece(p, y) == pytest.approx(0.41)


def test_ece_last_bin_is_closed_and_perfect_calibration_is_zero():
    assert _metrics.ece([1.0, 1.0], [1, 1]) == 0.0
    assert _metrics.ece([0.0, 0.0], [0, 0]) == 0.0
    # two bins: [0,0.5) holds .25 (y 0) and [0.5,1] holds .75 and 1.0 (y 1, 1)
    assert _metrics.ece([0.25, 0.75, 1.0], [0, 1, 1], n_bins=2) == pytest.approx((0.25 + 2 * 0.125) / 3)


def test_auc_hand_computed_with_a_tie():
    # positives {.9, .4}, negatives {.4, .2}: 1 + 1 + 0.5 (tie) + 1 over 4 pairs
    assert _metrics.auc([0.9, 0.4, 0.4, 0.2], [1, 1, 0, 0]) == pytest.approx(0.875)


def test_auc_edge_cases():
    assert _metrics.auc([0.9, 0.1], [1, 0]) == 1.0
    assert _metrics.auc([0.1, 0.9], [1, 0]) == 0.0
    assert _metrics.auc([0.5, 0.5, 0.5], [1, 0, 1]) == 0.5  # all tied
    assert math.isnan(_metrics.auc([0.2, 0.7], [1, 1]))  # one class only
    assert math.isnan(_metrics.auc([0.2, 0.7], [0, 0]))
    assert math.isnan(_metrics.auc([], []))


def test_auc_agrees_with_sklearn():
    sklearn_metrics = importlib.import_module("sklearn.metrics")
    rng = np.random.default_rng(0)
    p = rng.integers(0, 5, size=60) / 4  # many ties
    y = rng.integers(0, 2, size=60)
    assert _metrics.auc(p, y) == pytest.approx(sklearn_metrics.roc_auc_score(y, p))


def test_label_accuracy_and_empty_inputs():
    assert _metrics.accuracy([0.9, 0.2, 0.6, 0.5], [1, 0, 0, 1]) == 0.75
    assert math.isnan(_metrics.brier([], []))
    assert math.isnan(_metrics.ece([], []))


def test_metrics_reject_bad_inputs():
    with pytest.raises(ValueError):
        _metrics.brier([0.5, 0.5], [1])
    with pytest.raises(ValueError):
        _metrics.brier([1.5], [1])
    with pytest.raises(ValueError):
        _metrics.auc([0.5], [2])


# ---- label probabilities from logprobs -------------------------------------------------------

def _output(top: dict[str, float] | None):
    from inspect_ai.model import ChatCompletionChoice, ChatMessageAssistant, ModelOutput
    from inspect_ai.model._model_output import Logprob, Logprobs, TopLogprob

    logprobs = None
    if top is not None:
        tops = [TopLogprob(token=t, logprob=math.log(p)) for t, p in top.items()]
        logprobs = Logprobs(content=[Logprob(token=tops[0].token, logprob=tops[0].logprob, top_logprobs=tops)])
    msg = ChatMessageAssistant(content=next(iter(top or {"x": 1})).replace("Ġ", " "))
    return ModelOutput(model="m", choices=[ChatCompletionChoice(message=msg, logprobs=logprobs)])


def test_label_probabilities_sum_spellings_and_normalise():
    from cruijff.tasks import label_probabilities

    # "1" and "Ġ1" (byte-level BPE's " 1") are both the label "1": 0.3 + 0.1 vs 0.2
    probs, floored = label_probabilities(_output({"1": 0.3, "Ġ1": 0.1, "0": 0.2, "x": 0.05}), ("1", "0"))
    assert probs["1"] == pytest.approx(0.4 / 0.6)
    assert probs["0"] == pytest.approx(0.2 / 0.6)
    assert floored == []


def test_label_missing_from_top_k_gets_the_smallest_listed_probability():
    from cruijff.tasks import label_probabilities

    probs, floored = label_probabilities(_output({"▁1": 0.5, "x": 0.2, "y": 0.05}), ("1", "0"))
    assert floored == ["0"]
    assert probs["0"] == pytest.approx(0.05 / 0.55)
    assert probs["1"] == pytest.approx(0.5 / 0.55)


def test_no_logprobs_means_uniform():
    from cruijff.tasks import label_probabilities

    probs, floored = label_probabilities(_output(None), ("1", "0"))
    assert probs == {"1": 0.5, "0": 0.5} and floored == ["1", "0"]


# ---- scorers ---------------------------------------------------------------------------------

def _score(scorer, output, target: str):
    from inspect_ai.model import ModelName
    from inspect_ai.scorer import Target
    from inspect_ai.solver import TaskState

    state = TaskState(model=ModelName("mockllm/model"), sample_id=0, epoch=1, input="q", messages=[],
                      output=output)
    return asyncio.run(scorer(state, Target(target)))


def test_exact_match_is_case_sensitive_and_whitespace_tolerant():
    from inspect_ai.model import ModelOutput

    from cruijff.tasks import exact_match

    assert _score(exact_match(), ModelOutput.from_content("m", "  Apple \n"), "Apple").value == "C"
    assert _score(exact_match(), ModelOutput.from_content("m", "apple"), "Apple").value == "I"
    assert _score(exact_match(ignore_case=True), ModelOutput.from_content("m", "apple"), "Apple").value == "C"
    assert _score(exact_match(), ModelOutput.from_content("m", "Apple pie"), "Apple").value == "I"


def test_label_probability_scorer_records_probability_and_truth():
    from cruijff.tasks import label_probability

    score = _score(label_probability(), _output({"0": 0.6, "1": 0.2, "z": 0.1}), "1")
    assert score.value == pytest.approx(0.25)
    assert score.answer == "0"
    assert score.metadata["y"] == 1
    score = _score(label_probability(), _output({"0": 0.6, "1": 0.2}), "maybe")
    assert score.metadata["y"] is None  # not a label: left out of the metrics


def test_metric_wrappers_match_the_pure_functions():
    from inspect_ai.scorer import SampleScore, Score

    from cruijff.tasks import auc, brier, ece, label_accuracy

    p, y = [0.9, 0.4, 0.4, 0.2, 0.7], [1, 1, 0, 0, None]
    scores = [SampleScore(score=Score(value=pi, metadata={"y": yi}), sample_id=i) for i, (pi, yi) in enumerate(zip(p, y))]
    assert auc()(scores) == pytest.approx(0.875)
    assert brier()(scores) == pytest.approx(_metrics.brier(p[:4], y[:4]))
    assert ece()(scores) == pytest.approx(_metrics.ece(p[:4], y[:4]))
    assert label_accuracy()(scores) == pytest.approx(0.75)  # .9 ✓ .4 ✗ .4 ✓ .2 ✓


# ---- datasets → samples ----------------------------------------------------------------------

def test_instruct_json_samples_use_build_messages(tmp_path):
    from cruijff.prompting import build_messages
    from cruijff.tasks import load_samples

    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": [], "test": [{"input": "apple", "output": "Apple"},
                                                      {"input": 3, "output": 4}]}))
    samples = load_samples(data, split="test", template="Word: {input}", system="Be brief.")
    assert len(samples) == 2
    got = [{"role": m.role, "content": m.text} for m in samples[0].input]
    assert got == build_messages("apple", template="Word: {input}", system="Be brief.")
    assert samples[0].target == "Apple" and samples[1].target == "4"
    assert [s.id for s in samples] == [0, 1]
    assert len(load_samples(data, split="test", limit=1)) == 1


def test_chat_json_samples_end_before_the_last_assistant_turn(tmp_path):
    from cruijff.tasks import load_samples

    chats = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]}]
    (tmp_path / "test.json").write_text(json.dumps(chats))
    [sample] = load_samples(tmp_path, format="chat_json", split="test", system="S")
    assert [(m.role, m.text) for m in sample.input] == [("system", "S"), ("user", "hi")]
    assert sample.target == "Hello"


def test_dataset_errors_are_readable(tmp_path):
    from cruijff.errors import CruijffError
    from cruijff.tasks import load_samples

    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": [{"input": "a", "output": "A"}]}))
    with pytest.raises(CruijffError, match="no split 'test'"):
        load_samples(data, split="test")
    with pytest.raises(CruijffError, match="not found"):
        load_samples(tmp_path / "nope.json")
    with pytest.raises(CruijffError, match="unknown dataset format"):
        load_samples(data, format="csv")
    with pytest.raises(CruijffError, match="split file not found"):
        load_samples(tmp_path, format="chat_json", split="test")


def test_parquet_split(tmp_path):
    pa = importlib.import_module("pyarrow")
    import pyarrow.parquet as pq

    from cruijff.tasks import load_samples

    pq.write_table(pa.table({"input": ["x"], "output": ["X"]}), tmp_path / "test.parquet")
    [sample] = load_samples(tmp_path, format="parquet", split="test")
    assert sample.target == "X"


def test_task_is_greedy_seeded_and_asks_for_logprobs_when_needed(tmp_path):
    from cruijff.tasks import exact_match, instruct_task, label_probability

    data = tmp_path / "d.json"
    data.write_text(json.dumps({"test": [{"input": "a", "output": "1"}]}))
    plain = instruct_task(data, scorers=exact_match(), max_tokens=8)
    assert plain.config.temperature == 0.0 and plain.config.seed == 0 and plain.config.max_tokens == 8
    assert not plain.config.logprobs
    probs = instruct_task(data, scorers=[label_probability()], logprobs=True, top_logprobs=5)
    assert probs.config.logprobs is True and probs.config.top_logprobs == 5
