"""Resumable fine-tunes: one state file, saved atomically, and the signals that ask for it.

What is saved (`<output_dir>/checkpoints/resume.pt`, one torch file, CPU tensors):
the adapter (the trainable LoRA parameters), the optimizer and LR scheduler states, the global
step, the epoch and how many optimizer steps of it are done (the data position: the sampler's
order is a pure function of seed and epoch, so skipping `steps x gradient_accumulation_steps`
batches puts the loader where it was), the RNG states (torch, CUDA, python, numpy), the byte
length of logs/metrics.jsonl (a resumed run truncates it there and appends, so no step appears
twice), the running token count, the last validation and the epoch's running record.

It is written to `resume.pt.tmp-<pid>`, fsync'd, then renamed over `resume.pt` (os.replace is
atomic on POSIX), and the directory is fsync'd: at every instant `resume.pt` is either the
previous complete checkpoint or the new complete one, so a kill during a save resumes from the
previous one, and the previous is gone only once the new is in place. A state also carries a
fingerprint of the training config (everything but the keys that do not change the maths), so a
re-planned run with other hyperparameters never resumes from a stale file. A run that finishes
removes its file.

When: every `every_seconds` of wall time and/or `every_steps` optimizer steps (finetune.yaml's
`resume:` block; absent, every 30 minutes), and on SIGUSR1 (the time-limit warning the job script
forwards) or SIGTERM (a scheduler's requeue or preemption, before its kill): the handler only sets
a flag; the next optimizer-step boundary saves and the recipe exits with EXIT_RESUMABLE. A
checkpoint never lands on the last step of an epoch: that one is taken after the epoch's end
(validation, saves and export done), as an epoch boundary.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_EVERY_SECONDS = 1800
EXIT_RESUMABLE = 85  # the recipe stopped after a resumable checkpoint: run it again to continue
FILE_NAME = "resume.pt"
FORMAT = 1
# keys that do not change what is trained, so a changed value may still resume
# batch_size/gradient_accumulation_steps: an out-of-memory retry halves one and doubles the other,
# the same samples per optimizer step, so its checkpoint stays valid (cruijff.train.recipes)
_NOT_FINGERPRINTED = ("batch_size", "gradient_accumulation_steps", "resume", "metric_logger", "log_every_n_steps", "log_peak_memory_stats", "profiler",
                      "output_dir", "checkpointer", "export", "save_epochs", "resume_from_checkpoint")


class Interrupted(Exception):
    """Raised at a step boundary after the checkpoint the signal asked for is saved."""

    def __init__(self, signum: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved")
        self.signum, self.step = signum, step


@dataclass(frozen=True)
class ResumeSettings:
    path: Path
    every_seconds: float | None
    every_steps: int | None

    @classmethod
    def from_cfg(cls, cfg) -> "ResumeSettings":
        block = cfg.get("resume", None) or {}
        seconds = block.get("every_seconds", DEFAULT_EVERY_SECONDS)  # null: no wall-time checkpoints
        steps = block.get("every_steps", None)
        path = Path(str(cfg.checkpointer.output_dir)) / FILE_NAME
        return cls(path, float(seconds) if seconds else None, int(steps) if steps else None)


def fingerprint(cfg) -> str:
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_FINGERPRINTED:
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(state: dict[str, Any], path: Path) -> float:
    """Write `state` to `path` so that `path` is always a complete checkpoint; seconds taken."""
    import torch

    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    buffer = io.BytesIO()
    torch.save({**state, "format": FORMAT}, buffer)
    data = buffer.getbuffer()
    with open(tmp, "wb") as f:
        f.write(data[: len(data) // 2])
        _test_kill_during_save(f)
        f.write(data[len(data) // 2:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return time.perf_counter() - start


def load(path: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at `path` when it exists, is complete and belongs to this config; else None.
    Leftover temporary files (a save that was killed) are removed."""
    import torch

    for stale in path.parent.glob(f"{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - an unreadable file is not a checkpoint
        print(f"cruijff: ignoring unreadable resume checkpoint {path}: {e}", flush=True)
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None
    if state.get("fingerprint") != expected_fingerprint:
        print(f"cruijff: {path} belongs to another training config; starting from the beginning", flush=True)
        return None
    return state


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StopFlag:
    """SIGUSR1/SIGTERM set a flag (the handler does nothing else); the loop acts on it."""

    SIGNALS = (signal.SIGUSR1, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self.received_at: float | None = None

    def install(self) -> None:
        for s in self.SIGNALS:
            signal.signal(s, self._handle)

    def _handle(self, signum, frame) -> None:
        print(f"cruijff: received {signal.Signals(signum).name}: saving a checkpoint at the next step",
              flush=True)
        self.signum, self.received_at = signum, time.time()
        # The run stops at the next step either way. Further signals (the job script sends the
        # warning again until the recipe exits) are ignored: while Python shuts down it puts the
        # default action back on signals that have a Python handler, and USR1's default would
        # end the process (exit 138) after its checkpoint was saved.
        for s in self.SIGNALS:
            signal.signal(s, signal.SIG_IGN)

    def quiet(self) -> None:
        """Training, saves and exports are done: a late warning or TERM must not end the process
        with a signal's exit code now (Python shutdown restores the default actions)."""
        for s in self.SIGNALS:
            signal.signal(s, signal.SIG_IGN)

    def __bool__(self) -> bool:
        return self.signum is not None


# ---- test hooks (environment variables; off unless a test sets them) -----------------------------
def test_signal_after_step(step: int) -> None:
    """CRUIJFF_TEST_SIGNAL_AT_STEP=<step>[:<NAME>]: send ourselves that signal after that step."""
    spec = os.environ.get("CRUIJFF_TEST_SIGNAL_AT_STEP")
    if spec:
        at, _, name = spec.partition(":")
        if int(at) == step:
            os.kill(os.getpid(), getattr(signal, "SIG" + (name or "TERM")))
    delay = os.environ.get("CRUIJFF_TEST_STEP_SECONDS")
    if delay:  # slow steps down so that a real scheduler signal lands mid-run
        time.sleep(float(delay))


def test_oom(step: int, batch_size: int) -> None:
    """CRUIJFF_TEST_OOM_AT_STEP=<step>:<b>: raise torch's OutOfMemoryError after that step while
    the batch size is above b (so the retry at a smaller batch gets past it)."""
    spec = os.environ.get("CRUIJFF_TEST_OOM_AT_STEP")
    if spec:
        at, _, above = spec.partition(":")
        if int(at) == step and batch_size > int(above or 1):
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory (injected by CRUIJFF_TEST_OOM_AT_STEP at step {step})")


# ---- out-of-memory retries ------------------------------------------------------------------------
OVERRIDES = "overrides.json"  # <output_dir>/overrides.json: what a retry changed, for every later attempt


def apply_overrides(cfg) -> None:
    """Batch size and accumulation an earlier out-of-memory retry of this config chose."""
    path = Path(str(cfg.output_dir)) / OVERRIDES
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if data.get("fingerprint") == fingerprint(cfg):
        cfg.batch_size = int(data["batch_size"])
        cfg.gradient_accumulation_steps = int(data["gradient_accumulation_steps"])
        print(f"cruijff: batch_size {cfg.batch_size}, gradient_accumulation_steps "
              f"{cfg.gradient_accumulation_steps} (an earlier out-of-memory retry, {path})", flush=True)


def halve_batch(cfg) -> bool:
    """Half the batch size, double the accumulation (the same effective batch), written to the
    overrides file; False when the batch size is 1 already."""
    if int(cfg.batch_size) <= 1:
        return False
    cfg.batch_size = int(cfg.batch_size) // 2
    cfg.gradient_accumulation_steps = int(cfg.gradient_accumulation_steps) * 2
    path = Path(str(cfg.output_dir)) / OVERRIDES
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint(cfg), "batch_size": int(cfg.batch_size),
                               "gradient_accumulation_steps": int(cfg.gradient_accumulation_steps)}) + "\n")
    os.replace(tmp, path)
    return True


_saves = 0


def _test_kill_during_save(f) -> None:
    """CRUIJFF_TEST_KILL_DURING_SAVE=<n>: SIGKILL ourselves while the n-th save is half written."""
    global _saves
    _saves += 1
    spec = os.environ.get("CRUIJFF_TEST_KILL_DURING_SAVE")
    if spec and int(spec) == _saves:
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
