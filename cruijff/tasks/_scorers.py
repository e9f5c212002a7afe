"""inspect scorers and metrics: exact answers, and label probabilities for calibration.

Label probabilities come from the first generated token's top-k logprobs (GenerateConfig
logprobs=True, top_logprobs=k). Each label's probability is the summed probability of the top-k
tokens that spell it once the tokenizer's space markers (Ġ, ▁) and whitespace are stripped; a label
absent from the top-k gets a floor: the smallest top-k probability, an upper bound on any
unlisted token. The two label probabilities are then normalised to sum to one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def label_probabilities(output: ModelOutput, labels: Sequence[str]) -> tuple[dict[str, float], list[str]]:
    """Normalised P(label) from the first generated token, and the labels that got the floor."""
    choice = output.choices[0] if output.choices else None
    content = choice.logprobs.content if choice and choice.logprobs else []
    if not content or not content[0].top_logprobs:
        # No logprobs (provider without support): no information, uniform.
        return {lab: 1 / len(labels) for lab in labels}, list(labels)
    top = content[0].top_logprobs
    wanted = {normalise_token(lab): lab for lab in labels}
    mass = {lab: 0.0 for lab in labels}
    for t in top:
        lab = wanted.get(normalise_token(t.token))
        if lab is not None:
            mass[lab] += math.exp(t.logprob)
    floor = min(math.exp(t.logprob) for t in top)
    missing = [lab for lab in labels if mass[lab] == 0.0]
    for lab in missing:
        mass[lab] = floor
    total = sum(mass.values())
    if total <= 0:  # every listed probability underflowed
        return {lab: 1 / len(labels) for lab in labels}, list(labels)
    return {lab: m / total for lab, m in mass.items()}, missing


def _normalise_answer(text: str) -> str:
    return " ".join(text.split())


@scorer(metrics=[accuracy(), stderr()])
def exact_match(ignore_case: bool = False) -> Scorer:
    """The whole answer equals the target, whitespace-normalised (case kept unless ignore_case)."""

    async def score(state: TaskState, target: Target) -> Score:
        answer = _normalise_answer(state.output.completion)
        ok = False
        for t in target:
            a, b = answer, _normalise_answer(t)
            if ignore_case:
                a, b = a.casefold(), b.casefold()
            ok = ok or a == b
        return Score(value=CORRECT if ok else INCORRECT, answer=answer)

    return score


def _pairs(scores: list[SampleScore]) -> tuple[list[float], list[int]]:
    p, y = [], []
    for s in scores:
        meta = s.score.metadata or {}
        if meta.get("y") is None:
            continue  # target was not one of the labels
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
    """Expected calibration error, 10 equal-width bins of P(positive label); lower is better."""

    def compute(scores: list[SampleScore]) -> float:
        return _metrics.ece(*_pairs(scores), n_bins=_metrics.ECE_BINS)

    return compute


@metric
def auc() -> Metric:
    """ROC AUC of P(positive label); NaN when the split has one class only."""

    def compute(scores: list[SampleScore]) -> float:
        return _metrics.auc(*_pairs(scores))

    return compute


@scorer(metrics=[label_accuracy(), brier(), ece(), auc()])
def label_probability(labels: Sequence[str] = ("1", "0"), positive: str = "1") -> Scorer:
    """Score value = P(positive label) from the model's logprobs; metadata y = 1 if the target is positive.

    Needs logprobs: the task's GenerateConfig sets logprobs=True and top_logprobs.
    """
    labels = tuple(labels)
    if positive not in labels or len(labels) != 2:
        raise ValueError(f"label_probability needs two labels including the positive one (got {labels}, {positive!r})")

    async def score(state: TaskState, target: Target) -> Score:
        probs, missing = label_probabilities(state.output, labels)
        truth = target.text.strip()
        y = (1 if truth == positive else 0) if truth in labels else None
        predicted = max(labels, key=lambda lab: probs[lab])
        return Score(
            value=probs[positive],
            answer=predicted,
            explanation=f"P({positive})={probs[positive]:.4f}; floored: {missing or 'none'}",
            metadata={"y": y, "probs": probs, "floored": missing},
        )

    return score
