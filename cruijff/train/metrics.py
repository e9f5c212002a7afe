"""What a training run leaves for `cruijff status` / `report`: metrics.jsonl and per-epoch records.

`<output_dir>/logs/metrics.jsonl`, one JSON object per line:
  {"type": "train", "step", "epoch", "train_loss", "lr", "tokens", "tokens_total",
   "tokens_per_second", "time"}
  {"type": "val", "step", "epoch", "val_loss", "tokens", "time"}
`step` is the optimizer step (1-based, torchtune's global_step), `epoch` 0-based; train `tokens`
counts the loss tokens of that step over all ranks; val `tokens` those of the whole split.
A loss that is NaN or infinite is written as null (strict JSON has no NaN); the recipe stops the
run at such a step, so a null loss is the last train event of a failed run.
`<output_dir>/epoch_<n>/record.json` is written at every epoch end (see EpochRecord).
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


class MetricsLog:
    """Appends one line per event and flushes, so a killed job keeps its curve."""

    def __init__(self, path: Path, *, append: bool):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a" if append else "w", encoding="utf-8")

    def write(self, **event) -> None:
        event.setdefault("time", time.time())
        self._file.write(json.dumps(finite(event), allow_nan=False) + "\n")
        self._file.flush()

    def position(self) -> int:
        """Bytes written so far (everything is flushed): where a resumed run truncates the file."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def finite(event: dict) -> dict:
    """The event with NaN/inf floats as None, so every line is strict JSON."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in event.items()}


def read_metrics(path: str | Path) -> list[dict]:
    """The events of a metrics.jsonl; a torn last line (killed job) is skipped."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


@dataclass
class EpochRecord:
    epoch: int
    steps: int = 0  # optimizer steps in this epoch
    global_step: int = 0  # optimizer steps since the start of training
    tokens: int = 0  # loss tokens trained on in this epoch, all ranks
    train_loss: float | None = None  # token-weighted mean over the epoch's steps
    val_loss: float | None = None  # token-weighted mean over the whole validation split
    train_seconds: float = 0.0  # the epoch's training steps, without validation/saving/export
    val_seconds: float = 0.0
    save_seconds: float = 0.0
    export_seconds: float | None = None
    wall_seconds: float = 0.0  # everything in the epoch, export included when done inline
    tokens_per_second: float | None = None  # tokens / train_seconds
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None  # cuda_max_allocated | cpu_max_rss
    world_size: int = 1
    saved: bool = False
    checkpoint_dir: str | None = None  # torchtune's adapter-only save for this epoch
    export_dir: str | None = None  # the clean HF model directory (merged), when exported
    exported: bool = False
    adapter_dir: str | None = None  # the clean adapter directory (finetune.export adapter or both)
    loss_sum: float = field(default=0.0, repr=False)  # running sums, not written

    def add_step(self, loss: float, tokens: int) -> None:
        self.steps += 1
        self.tokens += tokens
        self.loss_sum += loss * tokens

    def finish(self) -> None:
        if self.tokens:
            self.train_loss = self.loss_sum / self.tokens
        if self.train_seconds > 0:
            self.tokens_per_second = self.tokens / self.train_seconds

    def write(self, path: Path) -> None:
        data = asdict(self)
        data.pop("loss_sum")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(finite(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)


def reset_peak_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device) -> tuple[int, str]:
    """Peak since the last reset on CUDA; on CPU the process's peak RSS (cannot be reset)."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_max_rss"
