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


def test_ece_hand_computed_with_ten_right_closed_bins():
    p = [0.1, 0.15, 0.8, 0.85, 0.95]
    y = [0, 1, 1, 1, 0]
    # right-closed bins, 0 in the first: .1 in [0,.1] (gap .1), .15 in (.1,.2] (.85), .8 in (.7,.8]
    # (.2), .85 in (.8,.9] (.15), .95 in (.9,1] (.95): (.1 + .85 + .2 + .15 + .95) / 5
    assert _metrics.ece(p, y) == pytest.approx(0.45)


def test_ece_edges_belong_to_the_lower_bin():
    # two bins [0, .5] and (.5, 1]: 0 and .5 share the first (mean p .25, mean y 0: gap .25 × 2);
    # .75 and 1 the second (mean .875 vs 1: .125 × 2). Left-closed bins would give .0625.
    assert _metrics.ece([0.0, 0.5, 0.75, 1.0], [0, 0, 1, 1], n_bins=2) == pytest.approx(0.1875)
    assert list(_metrics.bin_ids([0.0, 0.1, 0.1000001, 0.5, 0.9, 1.0])) == [0, 0, 1, 4, 8, 9]


def test_ece_perfect_calibration_and_the_extremes():
    assert _metrics.ece([1.0, 1.0], [1, 1]) == 0.0
    assert _metrics.ece([0.0, 0.0], [0, 0]) == 0.0
    assert _metrics.ece([0.0, 1.0], [1, 0]) == 1.0  # certain and wrong, both ways


def test_ece_one_sample_one_class_and_ties():
    assert _metrics.ece([0.3], [1]) == pytest.approx(0.7)
    assert _metrics.ece([0.2, 0.4, 0.4], [0, 0, 0]) == pytest.approx((0.2 + 0.4 + 0.4) / 3)  # one class: mean p
    assert _metrics.ece([0.4, 0.4, 0.4, 0.4], [1, 0, 1, 0]) == pytest.approx(0.1)  # tied p, one bin


def test_ece_agrees_with_sklearn_calibration_curve():
    """Same bins as scikit-learn: per-bin means are calibration_curve's, and ECE follows from them."""
    calibration_curve = importlib.import_module("sklearn.calibration").calibration_curve
    rng = np.random.default_rng(3)
    for n_bins in (2, 5, 10, 15):
        edges = np.linspace(0, 1, n_bins + 1)
        p = np.concatenate([rng.random(200), edges, edges, [0.0, 1.0]])  # many values on bin edges
        y = rng.integers(0, 2, size=p.size)
        prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins)
        counts, mean_y, mean_p = _metrics.reliability(p, y, n_bins)
        np.testing.assert_allclose(mean_y, prob_true)
        np.testing.assert_allclose(mean_p, prob_pred)
        assert counts.sum() == p.size
        ids = np.searchsorted(edges[1:-1], p)  # what calibration_curve bins by
        weights = np.bincount(ids, minlength=n_bins)[np.bincount(ids, minlength=n_bins) > 0]
        expected = float(np.sum(weights * np.abs(prob_true - prob_pred)) / p.size)
        assert _metrics.ece(p, y, n_bins) == pytest.approx(expected)


def test_confidence_ece_hand_computed_and_against_sklearn():
    # predicted: .9 → 1 (right, conf .9); .2 → 0 (wrong, conf .8); .5 → 1 (tie: positive; wrong, .5);
    # .6 → 1 (wrong, .6): each alone in its bin: (.1 + .8 + .5 + .6) / 4
    p, y = [0.9, 0.2, 0.5, 0.6], [1, 1, 0, 0]
    assert _metrics.confidence_ece(p, y) == pytest.approx(0.5)
    conf, correct = _metrics.top_label(p, y)
    assert list(conf) == pytest.approx([0.9, 0.8, 0.5, 0.6]) and list(correct) == [1, 0, 0, 0]
    calibration_curve = importlib.import_module("sklearn.calibration").calibration_curve
    rng = np.random.default_rng(5)
    p = rng.random(300)
    y = rng.integers(0, 2, size=300)
    conf, correct = _metrics.top_label(p, y)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10)
    _, mean_y, mean_p = _metrics.reliability(conf, correct.astype(int), 10)
    np.testing.assert_allclose(mean_y, prob_true)
    np.testing.assert_allclose(mean_p, prob_pred)
    assert _metrics.confidence_ece([1.0, 0.0], [1, 0]) == 0.0  # certain and right
    assert _metrics.confidence_ece([0.3], [1]) == pytest.approx(0.7)  # one sample


def test_regression_metrics_agree_with_sklearn():
    sk = importlib.import_module("sklearn.metrics")
    rng = np.random.default_rng(7)
    t = rng.normal(40, 10, size=50)
    pr = t + rng.normal(2, 5, size=50)
    r = _metrics.regression(pr, t)
    assert r["mae"] == pytest.approx(sk.mean_absolute_error(t, pr))
    assert r["rmse"] == pytest.approx(math.sqrt(sk.mean_squared_error(t, pr)))
    assert r["r2"] == pytest.approx(sk.r2_score(t, pr))
    assert r["bias"] == pytest.approx(float(np.mean(pr - t)))
    assert r["pred_std"] == pytest.approx(float(np.std(pr)))


def test_regression_edge_cases_hand_computed():
    r = _metrics.regression([3.0], [5.0])  # one sample: errors defined, R² not
    assert (r["mae"], r["rmse"], r["bias"], r["pred_std"]) == (2.0, 2.0, -2.0, 0.0) and math.isnan(r["r2"])
    r = _metrics.regression([1.0, 3.0], [2.0, 2.0])  # constant target: R² undefined
    assert r["mae"] == 1.0 and r["bias"] == 0.0 and math.isnan(r["r2"])
    r = _metrics.regression([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert r["mae"] == 0.0 and r["r2"] == 1.0
    assert math.isnan(_metrics.regression([], [])["mae"])


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
    lp = label_probabilities(_output({"1": 0.3, "Ġ1": 0.1, "0": 0.2, "x": 0.05}), ("1", "0"))
    assert lp.probs["1"] == pytest.approx(0.4 / 0.6)
    assert lp.probs["0"] == pytest.approx(0.2 / 0.6)
    assert lp.floored == [] and lp.summed == ["1"] and not lp.dropped


def test_label_missing_from_top_k_gets_the_smallest_listed_probability():
    from cruijff.tasks import label_probabilities

    lp = label_probabilities(_output({"▁1": 0.5, "x": 0.2, "y": 0.05}), ("1", "0"))
    assert lp.floored == ["0"] and lp.summed == [] and not lp.dropped
    assert lp.probs["0"] == pytest.approx(0.05 / 0.55)
    assert lp.probs["1"] == pytest.approx(0.5 / 0.55)
    # cruijff_kit's rule, on request: the sample leaves the probability metrics
    assert label_probabilities(_output({"▁1": 0.5, "x": 0.2}), ("1", "0"), missing="drop").dropped
    assert not label_probabilities(_output({"1": 0.5, "0": 0.2}), ("1", "0"), missing="drop").dropped
    with pytest.raises(ValueError):
        label_probabilities(_output({"1": 0.5}), ("1", "0"), missing="overwrite")


def test_no_logprobs_means_uniform():
    from cruijff.tasks import label_probabilities

    lp = label_probabilities(_output(None), ("1", "0"))
    assert lp.probs == {"1": 0.5, "0": 0.5} and lp.floored == ["1", "0"] and not lp.dropped
    assert label_probabilities(_output(None), ("1", "0"), missing="drop").dropped


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
    strict = _score(exact_match(), ModelOutput.from_content("m", "Apple."), "Apple")
    assert strict.value == "I" and strict.metadata["match"] == "exact"


def test_exact_match_can_ignore_end_punctuation_like_inspects_match():
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import match

    from cruijff.tasks import exact_match

    loose = exact_match(ignore_punctuation=True)
    for answer, ok in (("Apple.", "C"), ("\"Apple!\"", "C"), ("Apple pie.", "I"), ("apple.", "I")):
        score = _score(loose, ModelOutput.from_content("m", answer), "Apple")
        assert score.value == ok, answer
        # the same verdict as inspect's match(location="exact"), cruijff_kit's capitalization scorer
        assert _score(match(location="exact", ignore_case=False), ModelOutput.from_content("m", answer),
                      "Apple").value == ok
    assert _score(loose, ModelOutput.from_content("m", "Apple."), "Apple").metadata["match"] == \
        "exact, end punctuation ignored"


def test_label_probability_scorer_records_probability_and_truth():
    from cruijff.tasks import label_probability

    score = _score(label_probability(), _output({"0": 0.6, "1": 0.2, "z": 0.1}), "1")
    assert score.value == pytest.approx(0.25)
    assert score.answer == "0"
    assert score.metadata["y"] == 1
    score = _score(label_probability(), _output({"0": 0.6, "1": 0.2}), "maybe")
    assert score.metadata["y"] is None  # not a label: left out of the metrics
    score = _score(label_probability(missing="drop"), _output({"0": 0.6, "z": 0.2}), "1")
    assert score.value == "I" and score.metadata["dropped"] and score.metadata["missing_rule"] == "drop"


def test_rule_counts_and_dropped_samples_in_the_metrics():
    from inspect_ai.scorer import SampleScore

    from cruijff.tasks import brier, dropped, floored, label_probability, summed

    outputs = [({"1": 0.5, "Ġ1": 0.2, "0": 0.1}, "1"), ({"0": 0.6, "z": 0.2}, "0"), ({"1": 0.7, "0": 0.2}, "0")]
    for rule, n_dropped in (("floor", 0), ("drop", 1)):
        scores = [SampleScore(score=_score(label_probability(missing=rule), _output(top), t), sample_id=i)
                  for i, (top, t) in enumerate(outputs)]
        assert (summed()(scores), floored()(scores), dropped()(scores)) == (1.0, 1.0, float(n_dropped))
        kept = [s.score for s in scores if not s.score.metadata["dropped"]]
        assert brier()(scores) == pytest.approx(_metrics.brier([k.value for k in kept],
                                                               [k.metadata["y"] for k in kept]))


def test_continuous_scorer_parses_numbers_and_reports_error_metrics():
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import SampleScore

    from cruijff.tasks import bias, continuous, mae, parse_number, parse_rate, pred_std, r2, rmse

    assert parse_number("$1,200.50") == 1200.5 and parse_number("about -3 years") == -3.0
    assert parse_number("45%") == 45.0 and parse_number("none") is None and parse_number("") is None
    answers = [("42", "40"), ("Age: 35.", "30"), ("I don't know", "50"), ("1,000", "990")]
    scores = [SampleScore(score=_score(continuous(), ModelOutput.from_content("m", a), t), sample_id=i)
              for i, (a, t) in enumerate(answers)]
    assert scores[0].score.value == 2.0 and scores[0].score.metadata["error"] == 2.0
    assert scores[2].score.value == "I" and scores[2].score.metadata["parsed"] is False
    expected = _metrics.regression([42, 35, 1000], [40, 30, 990])
    assert mae()(scores) == pytest.approx(expected["mae"]) == pytest.approx((2 + 5 + 10) / 3)
    assert rmse()(scores) == pytest.approx(expected["rmse"]) and r2()(scores) == pytest.approx(expected["r2"])
    assert bias()(scores) == pytest.approx(17 / 3) and pred_std()(scores) == pytest.approx(expected["pred_std"])
    assert parse_rate()(scores) == 0.75


def test_numeric_risk_scorer_reads_a_stated_probability():
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import SampleScore

    from cruijff.tasks import brier, confidence_ece, ece, label_accuracy, numeric_risk, parse_probability, parse_rate

    assert parse_probability("0.73") == 0.73 and parse_probability("73%") == 0.73
    assert parse_probability("1.5") is None and parse_probability("yes") is None
    assert parse_probability("Risk: 0.0") == 0.0 and parse_probability("1") == 1.0
    answers = [("0.9", "1"), ("20%", "1"), ("0.5", "0"), ("high", "0"), ("1.0", "1")]
    scores = [SampleScore(score=_score(numeric_risk(), ModelOutput.from_content("m", a), t), sample_id=i)
              for i, (a, t) in enumerate(answers)]
    assert scores[1].score.value == pytest.approx(0.2) and scores[1].score.metadata["y"] == 1
    assert scores[2].score.metadata["predicted"] == "1"  # a tie at 0.5 predicts positive
    assert scores[3].score.value == "I"
    p, y = [0.9, 0.2, 0.5, 1.0], [1, 1, 0, 1]
    assert brier()(scores) == pytest.approx(_metrics.brier(p, y))
    assert ece()(scores) == pytest.approx(_metrics.ece(p, y))
    assert confidence_ece()(scores) == pytest.approx(_metrics.confidence_ece(p, y))
    assert label_accuracy()(scores) == pytest.approx(0.5)
    assert parse_rate()(scores) == 0.8


def test_metric_wrappers_match_the_pure_functions():
    from inspect_ai.scorer import SampleScore, Score

    from cruijff.tasks import auc, brier, confidence_ece, ece, label_accuracy

    p, y = [0.9, 0.4, 0.4, 0.2, 0.7], [1, 1, 0, 0, None]
    scores = [SampleScore(score=Score(value=pi, metadata={"y": yi}), sample_id=i) for i, (pi, yi) in enumerate(zip(p, y))]
    assert auc()(scores) == pytest.approx(0.875)
    assert brier()(scores) == pytest.approx(_metrics.brier(p[:4], y[:4]))
    assert ece()(scores) == pytest.approx(_metrics.ece(p[:4], y[:4]))
    assert confidence_ece()(scores) == pytest.approx(_metrics.confidence_ece(p[:4], y[:4]))
    assert label_accuracy()(scores) == pytest.approx(0.75)  # .9 ✓ .4 ✗ .4 ✓ .2 ✓


# ---- datasets → samples ----------------------------------------------------------------------

def test_instruct_json_samples_use_build_messages(tmp_path):
    from cruijff.prompting import build_messages
    from cruijff.tasks import load_samples

    data = tmp_path / "d.json"
    data.write_text(json.dumps({"train": [], "test": [{"input": "apple", "output": "Apple"},
                                                      {"input": "3", "output": "4"}]}))
    samples = load_samples(data, split="test", template="Word: {input}", system="Be brief.")
    assert len(samples) == 2
    got = [{"role": m.role, "content": m.text} for m in samples[0].input]
    assert got == build_messages("apple", template="Word: {input}", system="Be brief.")
    assert samples[0].target == "Apple" and samples[1].target == "4"
    assert [s.id for s in samples] == [0, 1]
    assert len(load_samples(data, split="test", limit=1)) == 1
    # a number where plan and training want a string fails here too (the one reader)
    data.write_text(json.dumps({"test": [{"input": 3, "output": 4}]}))
    with pytest.raises(Exception, match=r"test\[0\]\.input is a number, not a string"):
        load_samples(data, split="test")


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
    with pytest.raises(CruijffError, match="split file missing: 'test'"):
        load_samples(data, split="test")
    with pytest.raises(CruijffError, match="not found"):
        load_samples(tmp_path / "nope.json")
    with pytest.raises(CruijffError, match="unknown dataset format"):
        load_samples(data, format="csv")
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(CruijffError, match="split file missing: 'test'"):
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


@pytest.mark.parametrize("rows, batch", [(6, 6), (64, 64), (65, None)])
def test_a_small_task_sends_its_samples_as_one_batch(tmp_path, rows, batch):
    """The hf provider's batch size is max_connections; a batch that is not full waits 2 s."""
    from cruijff.tasks import instruct_task
    from cruijff.tasks._scorers import exact_match

    data = tmp_path / "d.json"
    data.write_text(json.dumps({"test": [{"input": f"w{i}", "output": f"W{i}"} for i in range(rows)]}))
    task = instruct_task(str(data), scorers=exact_match())
    assert task.config.max_connections == batch and task.config.temperature == 0.0
