"""Reading `<node dir>/record.jsonl`: what the job script itself says happened.

The job script appends `start` and `end` events (docs/dev/architecture.md), so status stays
right where sacct is absent and squeue has forgotten a finished job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from cruijff.model import Plan


@dataclass(frozen=True)
class Attempt:
    """One execution of a job script: its start event and, once it exited, its end event."""

    job_id: str | None
    start: float | None
    host: str | None = None
    end: float | None = None
    exit_code: int | None = None

    @property
    def finished(self) -> bool:
        return self.end is not None


def read_attempts(path: str | Path) -> list[Attempt]:
    """Attempts in file order; lines that are torn or not ours are skipped, never fatal."""
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return []
    attempts: list[Attempt] = []
    open_by_job: dict[str | None, int] = {}
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
            attempts.append(Attempt(job_id=job_id, start=_num(event.get("time")), host=event.get("host")))
        elif event.get("event") == "end":
            code = event.get("exit_code")
            index = open_by_job.pop(job_id, None)
            ended = dict(end=_num(event.get("time")), exit_code=int(code) if code is not None else None)
            if index is None:  # an end without its start (truncated file): keep what we know
                attempts.append(Attempt(job_id=job_id, start=None, **ended))
            else:
                a = attempts[index]
                attempts[index] = Attempt(a.job_id, a.start, a.host, **ended)
    return attempts


def _num(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def last_attempt(path: str | Path, job_id: str | None = None) -> Attempt | None:
    """The latest attempt, or the latest one of this job id when given."""
    for attempt in reversed(read_attempts(path)):
        if job_id is None or attempt.job_id == job_id:
            return attempt
    return None


def plan_attempts(plan: Plan) -> dict[str, list[Attempt]]:
    """Every node's attempts, by node id (one small file read per node)."""
    root = Path(plan.output_dir)
    return {n.id: read_attempts(root / n.record) for n in plan.nodes}
