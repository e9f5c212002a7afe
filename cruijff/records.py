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
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
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
