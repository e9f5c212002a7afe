"""Reading `<node dir>/record.jsonl`: what the job script itself says happened.

The job script appends `start` and `end` events (docs/dev/architecture.md), so status stays
right where sacct is absent and squeue has forgotten a finished job. A step that fails with a
known cause (a recipe's or an evaluation's error) appends an `error` event in between, and
status shows its first line.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from cruijff.plan import Plan


@dataclass(frozen=True)
class Attempt:
    """One execution of a job script: its start event and, once it exited, its end event."""

    job_id: str | None
    start: float | None
    host: str | None = None
    end: float | None = None
    exit_code: int | None = None
    error: str | None = None  # why it failed, when a step of the job said so
    signal: str | None = None  # the signal that ended it (TERM: requeue/preemption/cancel, USR1: time limit)
    resumed_step: int | None = None  # a fine-tune that resumed from its checkpoint: at this step
    stopped_step: int | None = None  # ... that saved and stopped on a signal: after this step
    requeued: bool = False  # it requeued itself (after the time-limit warning)
    oom_batch_size: int | None = None  # retried after out-of-memory at this batch size
    reused_samples: tuple[int, int] | None = None  # an evaluation that continued a killed one's log: (kept, of)
    checkpoint_step: int | None = None  # the latest step a resumable checkpoint of this attempt saved

    @property
    def progress_step(self) -> int | None:
        """How far this attempt got that a next one keeps: its last checkpoint (or the step it
        stopped after, which it saved)."""
        steps = [s for s in (self.checkpoint_step, self.stopped_step) if s is not None]
        return max(steps) if steps else None

    @property
    def reason(self) -> str | None:
        """The error's first line, for one-line displays."""
        return self.error.strip().splitlines()[0] if self.error and self.error.strip() else None

    @property
    def finished(self) -> bool:
        return self.end is not None


def read_attempts(path: str | Path) -> list[Attempt]:
    """Attempts in file order; lines that are torn or not ours are skipped, never fatal."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return []
    attempts: list[Attempt] = []
    open_by_job: dict[str | None, int] = {}
    carried: int | None = None  # an out-of-memory retry `apply` decided: the next job's first attempt runs it
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        job_id = None if event.get("job_id") in (None, "") else str(event.get("job_id"))
        if event.get("event") == "start":
            open_by_job[job_id] = len(attempts)
            attempts.append(Attempt(job_id=job_id, start=_num(event.get("time")), host=event.get("host"),
                                    oom_batch_size=carried))
            carried = None
        elif event.get("event") == "end":
            code = event.get("exit_code")
            index = open_by_job.pop(job_id, None)
            ended = dict(end=_num(event.get("time")), exit_code=int(code) if code is not None else None,
                         signal=event.get("signal") or None)
            if index is None:  # an end without its start (truncated file): keep what we know
                attempts.append(Attempt(job_id=job_id, start=None, **ended))
            else:
                attempts[index] = replace(attempts[index], **ended)
        elif not attempts:
            continue
        # written by a step of the running job, which does not know its job id: the latest attempt
        elif event.get("event") == "error" and isinstance(event.get("message"), str):
            attempts[-1] = replace(attempts[-1], error=event["message"])
        elif event.get("event") == "resume" and isinstance(event.get("step"), int):
            attempts[-1] = replace(attempts[-1], resumed_step=event["step"])
        elif event.get("event") == "resume" and isinstance(event.get("reused_samples"), int):
            attempts[-1] = replace(attempts[-1], reused_samples=(event["reused_samples"], int(event.get("samples") or 0)))
        elif event.get("event") == "checkpoint" and isinstance(event.get("step"), int):
            attempts[-1] = replace(attempts[-1], checkpoint_step=max(event["step"], attempts[-1].checkpoint_step or 0))
        elif event.get("event") == "interrupted" and isinstance(event.get("step"), int):
            attempts[-1] = replace(attempts[-1], stopped_step=event["step"])
        elif event.get("event") == "oom_retry" and isinstance(event.get("batch_size"), int):
            if event.get("source") == "apply":  # decided between jobs, from the scheduler's OUT_OF_MEMORY
                carried = event["batch_size"]
            else:
                attempts[-1] = replace(attempts[-1], oom_batch_size=event["batch_size"])
        elif event.get("event") == "requeue":
            attempts[-1] = replace(attempts[-1], requeued=True)
    return attempts


def record_error(message: str, node_dir: str | None = None) -> None:
    """Append an `error` event to the running job's record.jsonl ($CRUIJFF_NODE_DIR); else nothing.

    Only one process of a distributed job writes it (RANK 0 or unset).
    """
    record_event("error", node_dir=node_dir, message=message)


def record_event(event: str, node_dir: str | None = None, **fields) -> None:
    """Append one event of the running job (`error`, `checkpoint`, `resume`, `interrupted`) to its
    record.jsonl ($CRUIJFF_NODE_DIR); outside a job script, nothing. RANK 0 (or unset) only."""
    node_dir = node_dir or os.environ.get("CRUIJFF_NODE_DIR")
    if not node_dir or os.environ.get("RANK", "0") != "0":
        return
    line = json.dumps({"event": event, "time": time.time(), **fields}) + "\n"
    try:
        with open(Path(node_dir) / "record.jsonl", "a", encoding="utf-8") as f:
            f.write(line)
    except OSError:
        pass  # the message is on stderr already; a read-only node dir must not hide it


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_WHY = {"USR1": "the time limit", "TERM": "SIGTERM (requeue or preemption)", "KILL": "SIGKILL"}


def attempt_note(attempts: list[Attempt], job_id: str | None) -> tuple[int, str | None]:
    """How many attempts the job `job_id` has had (a requeued job keeps its id) and what happened
    to them: "attempt 3, resumed at step 5,496 after the time limit", "retried with batch_size 4
    after out-of-memory"; None for a plain single attempt."""
    mine = [a for a in attempts if job_id is None or a.job_id == job_id]
    if not mine:
        return 0, None
    last = mine[-1]
    parts = []
    if len(mine) > 1 or last.resumed_step is not None or last.stopped_step is not None or last.reused_samples:
        parts.append(f"attempt {len(mine)}")
    oom = next((a.oom_batch_size for a in reversed(mine) if a.oom_batch_size), None)
    if oom:
        parts.append(f"retried with batch_size {oom} after out-of-memory")
    if last.finished and last.stopped_step is not None:
        parts.append(f"stopped after step {last.stopped_step:,} by {_why(last)}" + (", requeued" if last.requeued else ""))
    elif last.resumed_step is not None:
        parts.append(f"resumed at step {last.resumed_step:,}" + (f" after {_why(mine[-2])}" if len(mine) > 1 else ""))
    elif last.reused_samples is not None:
        kept, total = last.reused_samples
        parts.append(f"continued its log, {kept:,} of {total:,} samples kept"
                     + (f" after {_why(mine[-2])}" if len(mine) > 1 else ""))
    return len(mine), ", ".join(parts) or None


def stalled_attempts(attempts: list[Attempt], job_id: str | None, *, current: bool) -> int:
    """How many of the job's latest attempts in a row saved no checkpoint past every earlier one's
    (nor past the step they resumed at): finetune.resume.max_attempts bounds this, so a job that
    progresses in every attempt is never stopped. current: count the running (last) attempt too;
    otherwise it is left out (the job script asks at its start, when its start is recorded)."""
    mine = [a for a in attempts if a.job_id == job_id]
    if mine and not current:
        mine = mine[:-1]
    best, stalled = -1, 0
    for a in mine:
        step = a.progress_step
        if step is not None and step > max(best, a.resumed_step if a.resumed_step is not None else -1):
            best, stalled = step, 0
        else:
            stalled += 1
    return stalled


def main(argv: list[str] | None = None) -> int:
    """`python -m cruijff.run.records stalled RECORD JOB_ID [--current]`: prints stalled_attempts
    (the resumable job script's bound, cruijff.compiler.render.sbatch.resumable_lines)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[0] != "stalled":
        print("usage: python -m cruijff.run.records stalled RECORD JOB_ID [--current]", file=sys.stderr)
        return 2
    print(stalled_attempts(read_attempts(args[1]), args[2], current="--current" in args[3:]))
    return 0


def _why(attempt: Attempt) -> str:
    if attempt.signal:
        return _WHY.get(attempt.signal, f"SIG{attempt.signal}")
    return f"exit {attempt.exit_code}" if attempt.exit_code is not None else "a killed attempt"


def last_attempt(path: str | Path, job_id: str | None = None) -> Attempt | None:
    """The latest attempt, or the latest one of this job id when given."""
    for attempt in reversed(read_attempts(path)):
        if job_id is None or attempt.job_id == job_id:
            return attempt
    return None


class PlanAttempts(dict):
    """Every node's attempts, by node id, each record.jsonl read when first asked for (observe
    skips the files of queued jobs: at 5,000 pending nodes, 5,000 opens for nothing)."""

    def __init__(self, plan: Plan):
        super().__init__()
        self._root = plan.output_dir.rstrip("/") + "/"  # plain strings: pathlib costs more than the reads
        self._record = {n.id: n.record for n in plan.nodes}

    def get(self, node_id: str, default=None) -> list[Attempt]:
        if node_id not in self:
            record = self._record.get(node_id)
            if record is None:
                return default if default is not None else []
            self[node_id] = read_attempts(self._root + record)
        return self[node_id]


def plan_attempts(plan: Plan) -> PlanAttempts:
    """Every node's attempts, by node id (one small file read per node, on demand)."""
    return PlanAttempts(plan)


if __name__ == "__main__":
    raise SystemExit(main())
