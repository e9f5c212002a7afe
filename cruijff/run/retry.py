"""What the next `apply` does about a job that failed for a reason that is not the researcher's.

A small policy table (Nextflow's errorStrategy is the anchor), read from the scheduler's final
state of the node's job (sacct's State), never from a head process:

| scheduler state        | action                                                         |
|------------------------|----------------------------------------------------------------|
| OUT_OF_MEMORY          | a fine-tune: resubmitted at half batch_size, double            |
|                        | gradient_accumulation_steps (the same effective batch), down   |
|                        | to batch size 1; other jobs: held, "out of memory"             |
| NODE_FAIL, BOOT_FAIL   | resubmitted unchanged (a requeueable job that SLURM did not    |
|                        | requeue itself)                                                |
| anything else          | nothing automatic: held with its reason (apply --retry-failed) |

The out-of-memory the recipe sees itself (torch's OutOfMemoryError) is retried inside the recipe
(cruijff.train.recipes); this table is for the kernel's OOM killer, which the recipe cannot
catch. The smaller batch goes to `<run>/overrides.json`, the file the recipe reads at its start
(cruijff.train.resume.apply_overrides), and an `oom_retry` event to the node's record.jsonl.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

from cruijff.plan import FINETUNE, Plan
from cruijff.run.executors.base import FAILED

if TYPE_CHECKING:
    from cruijff.run.observe import Observation

OUT_OF_MEMORY = "OUT_OF_MEMORY"
NODE_FAILURES = ("NODE_FAIL", "BOOT_FAIL")
SMALLER_BATCH, UNCHANGED, NONE = "smaller_batch", "unchanged", "none"


@dataclass(frozen=True)
class Retry:
    action: str  # smaller_batch | unchanged | none
    reason: str
    batch_size: int | None = None  # smaller_batch: the next attempt's
    gradient_accumulation_steps: int | None = None
    previous_batch_size: int | None = None

    @property
    def automatic(self) -> bool:
        return self.action != NONE

    @property
    def retried(self) -> str:
        """apply's reason for the resubmission."""
        return f"{self.reason}, retried" + (f" at batch_size {self.batch_size}" if self.action == SMALLER_BATCH
                                            else " unchanged")



def held_reason(state: str, retry: Retry | None) -> str:
    """Why apply holds a failed node: its state, the reason when the table knows it."""
    return f"{state}: {retry.reason} (use --retry-failed)" if retry else f"{state} (use --retry-failed)"


Retries = Mapping[str, Retry]
NO_RETRIES: Retries = MappingProxyType({})


def after_failure(scheduler_state: str | None, exit_code: int | None, *, finetune: bool,
                  batch_size: int | None = None, gradient_accumulation_steps: int | None = None) -> Retry:
    """The table above, as a pure function of the failed job's end and its batch settings."""
    state = (scheduler_state or "").upper()
    if state == OUT_OF_MEMORY:
        if not finetune or not batch_size or not gradient_accumulation_steps:
            return Retry(NONE, "out of memory (OUT_OF_MEMORY): give the job more memory")
        if batch_size <= 1:
            return Retry(NONE, "out of memory (OUT_OF_MEMORY) at batch_size 1: use a smaller max_seq_len, "
                               "a smaller model or more memory")
        return Retry(SMALLER_BATCH, f"out of memory (OUT_OF_MEMORY) at batch_size {batch_size}",
                     batch_size // 2, gradient_accumulation_steps * 2, batch_size)
    if state in NODE_FAILURES:
        return Retry(UNCHANGED, f"node failure ({state})")
    what = state or "failed"
    return Retry(NONE, what + (f", exit {exit_code}" if exit_code is not None else ""))


# ---- what apply asks (plan and observations in, retries out; files read and written) -------------
def automatic_retries(plan: Plan, obs: dict[str, Observation]) -> dict[str, Retry]:
    """cruijff.run.retry's answer for each failed node the scheduler ended as out of memory or
    node failure (the only ones that need it: one small file read each)."""
    out: dict[str, Retry] = {}
    for node in plan.nodes:
        o = obs.get(node.id)
        if o is None or o.state != FAILED or (o.scheduler_state or "") not in (OUT_OF_MEMORY, *NODE_FAILURES):
            continue
        settings = batch_settings(Path(plan.output_dir) / node.dir) if node.kind == FINETUNE else None
        out[node.id] = after_failure(o.scheduler_state, o.exit_code, finetune=settings is not None,
                                     batch_size=settings[0] if settings else None,
                                     gradient_accumulation_steps=settings[1] if settings else None)
    return out


def prepare_retries(plan: Plan, obs: dict[str, Observation], retries: dict[str, Retry], to_submit: list[str]) -> None:
    """A fine-tune resubmitted after out of memory: its smaller batch in overrides.json, and why in its record."""
    for node_id in to_submit:
        r = retries.get(node_id)
        if r is not None and r.action == SMALLER_BATCH:
            run_dir = Path(plan.output_dir) / plan.node(node_id).dir
            settings = batch_settings(run_dir)
            if settings is not None:
                write_smaller_batch(run_dir, r, settings[2], obs[node_id].job_id)


# ---- the fine-tune's batch settings and the overrides file (the edge: files) ---------------------
OVERRIDES = "overrides.json"  # cruijff.train.resume.OVERRIDES


def batch_settings(run_dir: Path) -> tuple[int, int, str] | None:
    """(batch_size, gradient_accumulation_steps, config fingerprint) the run's next attempt would use:
    its finetune.yaml's, or an earlier retry's overrides.json of the same config."""
    from omegaconf import OmegaConf

    from cruijff.train.resume import fingerprint  # stdlib at import; omegaconf only inside

    try:
        cfg = OmegaConf.load(run_dir / "finetune.yaml")
        fp = fingerprint(cfg)
        batch, accumulation = int(cfg.batch_size), int(cfg.gradient_accumulation_steps)
    except Exception:  # noqa: BLE001 - no readable config: nothing to change
        return None
    try:
        data = json.loads((Path(str(cfg.output_dir)) / OVERRIDES).read_text())
        if data.get("fingerprint") == fp:
            batch, accumulation = int(data["batch_size"]), int(data["gradient_accumulation_steps"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return batch, accumulation, fp


def write_smaller_batch(run_dir: Path, retry: Retry, fingerprint: str, job_id: str | None) -> None:
    """overrides.json (atomically) and an `oom_retry` event in the node's record.jsonl."""
    from omegaconf import OmegaConf

    output_dir = Path(str(OmegaConf.load(run_dir / "finetune.yaml").output_dir))
    path = output_dir / OVERRIDES
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"fingerprint": fingerprint, "batch_size": retry.batch_size,
                               "gradient_accumulation_steps": retry.gradient_accumulation_steps}) + "\n")
    os.replace(tmp, path)
    event = {"event": "oom_retry", "time": time.time(), "source": "apply", "failed_job_id": job_id,
             "batch_size": retry.batch_size, "gradient_accumulation_steps": retry.gradient_accumulation_steps,
             "previous_batch_size": retry.previous_batch_size, "message": retry.reason}
    with open(run_dir / "record.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")
