"""inspect scorers and metrics: exact answers, label probabilities, numeric answers and risks.

Label probabilities come from the first generated token's top-k logprobs (GenerateConfig
logprobs=True, top_logprobs=k). The rules, each counted per eval by a metric of its own:

- summed: a label's probability is the SUM over the top-k tokens that spell it once the
  tokenizer's space markers (Ġ, ▁) and whitespace are stripped ("1" and " 1" are both the answer
  1, so P(answer 1) is their sum; keeping only one, as cruijff_kit's overwrite does, loses mass).
- floored (missing="floor", the default): a label absent from the top-k gets the smallest top-k
  probability, an upper bound on any unlisted token, and the sample stays in the metrics.
  missing="drop" leaves such a sample out of the probability metrics instead (cruijff_kit's rule);
  dropping selects samples by the model's own answer, which biases ECE and Brier, so it is opt-in.
- the label probabilities are then normalised to sum to one.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from inspect_ai.model import ModelOutput
from inspect_ai.scorer import (
    CORRECT,
    INCORRECT,
    Metric,
    SampleScore,
    Score,
    Scorer,
    Target,
    accuracy,
    metric,
    scorer,
    stderr,
)
from inspect_ai.solver import TaskState

from cruijff.tasks import _metrics

# Byte-level BPE (GPT-2, Llama 3 HF, Qwen) and SentencePiece (Llama 2, Mistral) space markers.
_MARKERS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}


def normalise_token(token: str) -> str:
    for marker, char in _MARKERS.items():
        token = token.replace(marker, char)
    return token.strip()


MISSING_RULES = ("floor", "drop")
# The value of a sample without a number (unparsed, dropped). Not NaN: inspect drops NaN-valued
# scores before any metric sees them, so parse_rate and the rule counts would miss them.
NO_VALUE = INCORRECT


@dataclass(frozen=True)
class LabelProbabilities:
    """Normalised P(label), and which rule touched which label."""

    probs: dict[str, float]
    summed: list[str]  # labels spelled by more than one top-k token (their probabilities added)
    floored: list[str]  # labels absent from the top-k (given the smallest top-k probability)
    dropped: bool = False  # missing="drop" and a label was absent: no probability for this sample


def label_probabilities(output: ModelOutput, labels: Sequence[str], missing: str = "floor") -> LabelProbabilities:
    """P(label) from the first generated token's top-k logprobs (rules in the module docstring)."""
    if missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {MISSING_RULES} (got {missing!r})")
    choice = output.choices[0] if output.choices else None
    content = choice.logprobs.content if choice and choice.logprobs else []
    uniform = {lab: 1 / len(labels) for lab in labels}
    if not content or not content[0].top_logprobs:
        # No logprobs (provider without support): no information.
        return LabelProbabilities(uniform, [], list(labels), dropped=missing == "drop")
    top = content[0].top_logprobs
    wanted = {normalise_token(lab): lab for lab in labels}
    mass = {lab: 0.0 for lab in labels}
    hits = {lab: 0 for lab in labels}
    for t in top:
        lab = wanted.get(normalise_token(t.token))
        if lab is not None:
            mass[lab] += math.exp(t.logprob)
            hits[lab] += 1
    summed = [lab for lab in labels if hits[lab] > 1]
    floor = min(math.exp(t.logprob) for t in top)
    floored = [lab for lab in labels if hits[lab] == 0]
    for lab in floored:
        mass[lab] = floor
    total = sum(mass.values())
    if total <= 0:  # every listed probability underflowed
        return LabelProbabilities(uniform, summed, list(labels), dropped=missing == "drop")
    probs = {lab: m / total for lab, m in mass.items()}
    return LabelProbabilities(probs, summed, floored, dropped=bool(floored) and missing == "drop")


def _normalise_answer(text: str, ignore_punctuation: bool = False) -> str:
    text = " ".join(text.split())
    return text.strip(string.whitespace + string.punctuation) if ignore_punctuation else text


@scorer(metrics=[accuracy(), stderr()])
def exact_match(ignore_case: bool = False, ignore_punctuation: bool = False) -> Scorer:
    """The whole answer equals the target, whitespace-normalised (case kept unless ignore_case).

    ignore_punctuation strips punctuation from both ends of answer and target first, as inspect's
    `match` does (cruijff_kit's capitalization scorer: "Apple." is correct); each Score's metadata
    says which comparison was made.
    """
    how = "exact" + (", case ignored" if ignore_case else "") + (", end punctuation ignored" if ignore_punctuation else "")

    async def score(state: TaskState, target: Target) -> Score:
        answer = _normalise_answer(state.output.completion)
        ok = False
        for t in target:
            a, b = _normalise_answer(answer, ignore_punctuation), _normalise_answer(t, ignore_punctuation)
            if ignore_case:
                a, b = a.casefold(), b.casefold()
            ok = ok or a == b
        return Score(value=CORRECT if ok else INCORRECT, answer=answer, metadata={"match": how})

    return score


def _pairs(scores: list[SampleScore]) -> tuple[list[float], list[int]]:
    p, y = [], []
    for s in scores:
        meta = s.score.metadata or {}
        if meta.get("y") is None or meta.get("dropped") or meta.get("parsed") is False:
            continue  # target not a label, sample dropped, or no probability in the answer
        p.append(float(s.score.as_float()))
        y.append(int(meta["y"]))
    return p, y


@metric
def label_accuracy() -> Metric:
    """Forced-choice accuracy: the more probable of the two labels is the target."""

    def compute(scores: list[SampleScore]) -> float:
        return _metrics.accuracy(*_pairs(scores))

    return compute


@metric
def brier() -> Metric:
    """Binary Brier score of P(positive label); lower is better."""

    def compute(scores: list[SampleScore]) -> float:
        return _metrics.brier(*_pairs(scores))

    return compute


@metric
def ece() -> Metric:
    """Expected calibration error of P(positive label), 10 bins as scikit-learn's calibration_curve; lower is better."""

    def compute(scores: list[SampleScore]) -> float:
        return _metrics.ece(*_pairs(scores), n_bins=_metrics.ECE_BINS)

    return compute


@metric
def confidence_ece() -> Metric:
    """Top-label ECE: confidence max(p, 1-p) of the predicted label against its correctness."""

    def compute(scores: list[SampleScore]) -> float:
        return _metrics.confidence_ece(*_pairs(scores), n_bins=_metrics.ECE_BINS)

    return compute


@metric
def auc() -> Metric:
    """ROC AUC of P(positive label); NaN when the split has one class only."""

    def compute(scores: list[SampleScore]) -> float:
        return _metrics.auc(*_pairs(scores))

    return compute


def _count(key: str):
    def compute(scores: list[SampleScore]) -> float:
        return float(sum(1 for s in scores if (s.score.metadata or {}).get(key)))

    return compute


@metric
def summed() -> Metric:
    """Samples where several top-k tokens spelled one label (their probabilities were added)."""
    return _count("summed")


@metric
def floored() -> Metric:
    """Samples where a label was absent from the top-k (given the floor, or dropped)."""
    return _count("floored")


@metric
def dropped() -> Metric:
    """Samples left out of the probability metrics (missing="drop")."""
    return _count("dropped")


@scorer(metrics=[label_accuracy(), brier(), ece(), confidence_ece(), auc(), summed(), floored(), dropped()])
def label_probability(labels: Sequence[str] = ("1", "0"), positive: str = "1", missing: str = "floor") -> Scorer:
    """Score value = P(positive label) from the model's logprobs; metadata y = 1 if the target is positive.

    Needs logprobs: the task's GenerateConfig sets logprobs=True and top_logprobs. missing:
    "floor" or "drop" (module docstring); a dropped sample's value is INCORRECT ("I"), not NaN,
    which inspect treats as unscored and hides from every metric, the counts included.
    """
    labels = tuple(labels)
    if positive not in labels or len(labels) != 2:
        raise ValueError(f"label_probability needs two labels including the positive one (got {labels}, {positive!r})")
    if missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {MISSING_RULES} (got {missing!r})")

    async def score(state: TaskState, target: Target) -> Score:
        lp = label_probabilities(state.output, labels, missing)
        truth = target.text.strip()
        y = (1 if truth == positive else 0) if truth in labels else None
        predicted = max(labels, key=lambda lab: lp.probs[lab])
        value = NO_VALUE if lp.dropped else lp.probs[positive]
        return Score(
            value=value,
            answer=predicted,
            explanation=(f"P({positive})={lp.probs[positive]:.4f}; summed: {lp.summed or 'none'}; "
                         f"floored: {lp.floored or 'none'}" + ("; dropped" if lp.dropped else "")),
            metadata={"y": y, "probs": lp.probs, "summed": lp.summed, "floored": lp.floored,
                      "dropped": lp.dropped, "missing_rule": missing},
        )

    return score


# ---- numbers in the answer ----------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_number(text: str | None) -> float | None:
    """The first number in text: thousands commas, $ and % dropped ("$1,200" is 1200); None if none."""
    if not text:
        return None
    cleaned = re.sub(r"(?<=\d),(?=\d)", "", text).replace("$", "")
    m = _NUMBER.search(cleaned)
    if not m:
        return None
    value = float(m.group())
    return value if math.isfinite(value) else None


def parse_probability(text: str | None) -> float | None:
    """A probability stated in the answer: the first number, "73%" read as 0.73; None outside [0, 1]."""
    if not text:
        return None
    m = _NUMBER.search(re.sub(r"(?<=\d),(?=\d)", "", text))
    if not m:
        return None
    value = float(m.group())
    if text[m.end():m.end() + 1] == "%":
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def _numeric_pairs(scores: list[SampleScore]) -> tuple[list[float], list[float]]:
    pred, tgt = [], []
    for s in scores:
        meta = s.score.metadata or {}
        if meta.get("prediction") is not None and meta.get("target_value") is not None:
            pred.append(float(meta["prediction"]))
            tgt.append(float(meta["target_value"]))
    return pred, tgt


def _regression(key: str):
    def compute(scores: list[SampleScore]) -> float:
        return _metrics.regression(*_numeric_pairs(scores))[key]

    return compute


@metric
def mae() -> Metric:
    """Mean absolute error of the parsed numbers."""
    return _regression("mae")


@metric
def rmse() -> Metric:
    """Root mean squared error of the parsed numbers."""
    return _regression("rmse")


@metric
def bias() -> Metric:
    """Mean signed error (answer - target): positive means the model overestimates."""
    return _regression("bias")


@metric
def r2() -> Metric:
    """Coefficient of determination; NaN when the targets are all equal."""
    return _regression("r2")


@metric
def pred_std() -> Metric:
    """Spread of the answers (population SD); 0 means one number for every sample."""
    return _regression("pred_std")


@metric
def parse_rate() -> Metric:
    """Share of answers in which a number (a probability, for numeric_risk) was found."""

    def compute(scores: list[SampleScore]) -> float:
        if not scores:
            return float("nan")
        return sum(1 for s in scores if (s.score.metadata or {}).get("parsed")) / len(scores)

    return compute


@scorer(metrics=[mae(), rmse(), bias(), r2(), pred_std(), parse_rate()])
def continuous() -> Scorer:
    """A numeric answer against a numeric target (like cruijff_kit's continuous_scorer).

    Score value = |answer - target|, or INCORRECT ("I") when no number was found in the answer (or
    the target), as cruijff_kit; metadata holds prediction, target_value and error for the metrics.
    """

    async def score(state: TaskState, target: Target) -> Score:
        completion = state.output.completion
        prediction, target_value = parse_number(completion), parse_number(target.text)
        parsed = prediction is not None
        error = prediction - target_value if parsed and target_value is not None else None
        return Score(
            value=abs(error) if error is not None else NO_VALUE,
            answer=completion.strip(),
            explanation=None if parsed else "no number in the answer",
            metadata={"prediction": prediction, "target_value": target_value, "error": error, "parsed": parsed},
        )

    return score


@scorer(metrics=[label_accuracy(), brier(), ece(), confidence_ece(), auc(), parse_rate()])
def numeric_risk(labels: Sequence[str] = ("1", "0"), positive: str = "1") -> Scorer:
    """A probability of the positive label stated as a number ("0.73", "73%"), scored like
    label_probability (like cruijff_kit's numeric_risk_scorer). Answers without a probability in
    [0, 1] count in parse_rate and are left out of the other metrics (value INCORRECT, "I").
    """
    labels = tuple(labels)
    if positive not in labels or len(labels) != 2:
        raise ValueError(f"numeric_risk needs two labels including the positive one (got {labels}, {positive!r})")

    async def score(state: TaskState, target: Target) -> Score:
        completion = state.output.completion
        risk = parse_probability(completion)
        truth = target.text.strip()
        y = (1 if truth == positive else 0) if truth in labels else None
        negative = next(lab for lab in labels if lab != positive)
        return Score(
            value=risk if risk is not None else NO_VALUE,
            answer=completion.strip(),
            explanation=None if risk is not None else "no probability in [0, 1] in the answer",
            metadata={"y": y, "risk": risk, "parsed": risk is not None,
                      "predicted": None if risk is None else (positive if risk >= 0.5 else negative)},
        )

    return score
