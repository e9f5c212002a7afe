"""inspect-ai evaluation tasks whose prompts come from cruijff.prompting, like training's.

Importing this package imports inspect_ai; the compiler and `cruijff status` never do.
"""

from cruijff.tasks._dataset import FORMATS, TaskDataError, load_samples, read_split, to_chat
from cruijff.tasks._scorers import (
    auc,
    brier,
    ece,
    exact_match,
    label_accuracy,
    label_probabilities,
    label_probability,
)
from cruijff.tasks._task import DEFAULT_SEED, DEFAULT_TOP_LOGPROBS, generate_config, instruct_task

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_TOP_LOGPROBS",
    "FORMATS",
    "TaskDataError",
    "auc",
    "brier",
    "ece",
    "exact_match",
    "generate_config",
    "instruct_task",
    "label_accuracy",
    "label_probabilities",
    "label_probability",
    "load_samples",
    "read_split",
    "to_chat",
]
