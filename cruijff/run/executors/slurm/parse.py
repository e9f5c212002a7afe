"""Pure parsers of what sbatch, squeue --json (22.05) and sacct print: text in, JobInfo out (docs/dev/slurm.md)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

from cruijff.compiler.batching import parse_task_ranges, task_ranges
from cruijff.errors import SchedulerError
from cruijff.run.executors.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    UNKNOWN,
    JobInfo,
)


# SLURM job states (squeue's job_state, sacct's State) -> normalised states.
STATE_MAP = {
    "PENDING": PENDING,
    "CONFIGURING": PENDING,
    "REQUEUED": PENDING,
    "REQUEUE_HOLD": PENDING,
    "REQUEUE_FED": PENDING,
    "RESV_DEL_HOLD": PENDING,
    "RUNNING": RUNNING,
    "COMPLETING": RUNNING,
    "SUSPENDED": RUNNING,
    "STOPPED": RUNNING,
    "RESIZING": RUNNING,
    "SIGNALING": RUNNING,
    "STAGE_OUT": RUNNING,
    "COMPLETED": COMPLETED,
    "FAILED": FAILED,
    "TIMEOUT": FAILED,
    "OUT_OF_MEMORY": FAILED,
    "NODE_FAIL": FAILED,
    "BOOT_FAIL": FAILED,
    "SPECIAL_EXIT": FAILED,
    "CANCELLED": CANCELLED,
    "DEADLINE": CANCELLED,
    "PREEMPTED": CANCELLED,
    "REVOKED": CANCELLED,
}
FINISHED = (COMPLETED, FAILED, CANCELLED)

# sacct: finished jobs only (live ones come from squeue). With explicit states and an end time,
# sacct also lists jobs cancelled before they ever became eligible (e.g. a dependency that can
# never be satisfied); without them it silently drops those.
SACCT_STATES = "CA,CD,F,TO,OOM,NF,BF,DL,PR"
SACCT_FIELDS = ("JobID", "State", "ExitCode", "Reason", "Start", "End", "Comment", "JobName")
SACCT_DELIMITER = "\x1f"  # never in a job name or comment
SACCT_WINDOW_DAYS = 28
ACCOUNTING_DISABLED = "accounting storage is disabled"  # sacct where there is no slurmdbd: no history


def parse_sbatch_output(stdout: str, node_id: str = "?") -> str:
    """`sbatch --parsable` prints `<id>` or `<id>;<cluster>`."""
    for line in (stdout or "").splitlines():
        job_id = line.strip().split(";", 1)[0]
        if job_id.isdigit():
            return job_id
    raise SchedulerError(
        f"sbatch accepted {node_id} but printed no job id: {stdout!r}",
        hint="check the job with squeue; a wrapper around sbatch may be rewriting its output",
    )


# --- squeue --json ------------------------------------------------------------------------


def _number(value) -> int | None:
    """An integer field: 22.05 gives plain ints; newer Slurm {"set": bool, "number": int}."""
    if isinstance(value, dict):
        if value.get("set") is False or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _state_name(value) -> str:
    """22.05: "RUNNING"; newer Slurm: ["RUNNING", "COMPLETING"] (base state first, then flags)."""
    if isinstance(value, list):
        names = [str(v) for v in value]
        if "COMPLETING" in names:
            return "COMPLETING"
        return next((n for n in names if n in STATE_MAP), names[0] if names else "")
    return str(value or "").split(" ")[0]


def normalise_state(slurm_state: str) -> str:
    return STATE_MAP.get(slurm_state.upper(), UNKNOWN)


def decode_wait_status(status: int | None) -> int | None:
    """squeue's 22.05 exit_code is the raw wait(2) status: exit code << 8, or the signal."""
    if status is None:
        return None
    signal = status & 0x7F
    if signal:
        return 128 + signal
    return (status >> 8) & 0xFF


def _squeue_exit_code(value) -> int | None:
    if isinstance(value, dict):  # newer Slurm: {"status": [...], "return_code": {...}, "signal": {...}}
        signal = value.get("signal") or {}
        sig = _number(signal.get("id")) if isinstance(signal, dict) else None
        if sig:
            return 128 + sig
        return _number(value.get("return_code"))
    return decode_wait_status(_number(value))


# final states that say why, kept as the scheduler wrote them (cruijff.run.retry acts on them)
TELLING_STATES = ("OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL")


def _scheduler_state(value) -> str | None:
    name = _state_name(value).upper()
    return name if name in TELLING_STATES else None


def _reason(value) -> str | None:
    if not value or value == "None":
        return None
    return str(value)


def _times(state: str, start: int | None, end: int | None) -> tuple[float | None, float | None]:
    """Only real times: pending jobs carry an estimated start, running ones their time-limit end."""
    start_t = float(start) if start and state != PENDING else None
    end_t = float(end) if end and state in FINISHED else None
    return start_t, end_t


def _squeue_job_key(job: dict, job_id: int) -> str:
    """Array tasks are keyed like sacct's JobID: `<array id>_<task>`, pending ones `<id>_[0-9]`."""
    array_id = _number(job.get("array_job_id"))
    if not array_id:
        return str(job_id)
    task = _number(job.get("array_task_id"))
    if task is not None:
        return f"{array_id}_{task}"
    tasks = str(job.get("array_task_string") or "")
    return f"{array_id}_[{tasks}]" if tasks else str(job_id)


def squeue_errors(data: dict) -> str:
    """The errors squeue --json reports alongside its (then empty) job list, as one line."""
    out = []
    for e in data.get("errors") or []:
        if isinstance(e, dict):
            text = "; ".join(str(e[k]) for k in ("source", "description", "error") if e.get(k))
        else:
            text = str(e)
        if text and text not in out:
            out.append(text)
    return " | ".join(out)


def _load_squeue(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SchedulerError(f"squeue --json printed something that is not JSON: {e}") from e
    return data if isinstance(data, dict) else {}


def _task_count(job: dict) -> int:
    """How many jobs a record stands for: a pending array's record holds all its unstarted tasks."""
    tasks = str(job.get("array_task_string") or "")
    return max(1, len(parse_task_ranges(tasks))) if tasks and _number(job.get("array_job_id")) else 1


def queue_counts(data: dict, uid: int | None) -> tuple[int, int]:
    """(jobs slurmctld holds, this user's pending or running jobs): for MaxJobCount, MaxSubmitJobs."""
    total = mine = 0
    for job in data.get("jobs") or []:
        n = _task_count(job)
        total += n
        live = normalise_state(_state_name(job.get("job_state"))) in (PENDING, RUNNING)
        if live and (uid is None or _number(job.get("user_id")) in (None, uid)):
            mine += n
    return total, mine


def compact_job_ids(job_ids: Iterable[str]) -> list[str]:
    """scancel arguments: plain ids as they are, array tasks as `<array>_[0-3,7]`, one per array."""
    plain: list[str] = []
    tasks: dict[str, list[int]] = {}
    for job_id in job_ids:
        array_id, sep, task = job_id.partition("_")
        if sep and task.isdigit():
            tasks.setdefault(array_id, []).append(int(task))
        elif job_id not in plain:
            plain.append(job_id)
    return plain + [f"{a}_{t[0]}" if len(t) == 1 else f"{a}_[{task_ranges(t)}]" for a, t in tasks.items()]


def parse_squeue_json(data: str | dict, prefix: str, uid: int | None = None) -> dict[str, JobInfo]:
    """Jobs named `<prefix><node id>` (22.05's --json ignores squeue's filters: filter here).

    A pending array's one record (`<id>_[2-5%2]`) becomes one JobInfo per task: `<id>_2` ...
    """
    if isinstance(data, str):
        data = _load_squeue(data)
    out: dict[str, JobInfo] = {}
    for job in data.get("jobs") or []:
        name = str(job.get("name") or "")
        if not name.startswith(prefix):
            continue
        job_uid = _number(job.get("user_id"))
        if uid is not None and job_uid is not None and job_uid != uid:
            continue
        job_id = _number(job.get("job_id"))
        if job_id is None:
            continue
        state = normalise_state(_state_name(job.get("job_state")))
        start, end = _times(state, _number(job.get("start_time")), _number(job.get("end_time")))
        info = JobInfo(
            job_id=_squeue_job_key(job, job_id),
            node_id=name[len(prefix):] or None,
            state=state,
            reason=_reason(job.get("state_reason")),
            exit_code=_squeue_exit_code(job.get("exit_code")) if state in FINISHED else None,
            start=start,
            end=end,
            node_hash=str(job.get("comment") or "") or None,
        )
        keys = _expand_array_key(info.job_id)
        if len(keys) == 1:
            out[keys[0]] = info
            continue
        fields = (info.node_id, info.state, info.reason, info.exit_code, info.start, info.end, info.node_hash)
        for key in keys:  # a pending array of 1,000 tasks: JobInfo() is cheaper than replace()
            out[key] = JobInfo(key, *fields)
    return out


def _expand_array_key(job_id: str) -> list[str]:
    """`12_[0-2%1]` -> ['12_0', '12_1', '12_2']; any other id as it is."""
    array_id, sep, tasks = job_id.partition("_")
    if sep and tasks.startswith("["):
        ids = parse_task_ranges(tasks)
        if ids:
            return [f"{array_id}_{t}" for t in ids]
    return [job_id]


# --- sacct --parsable2 ----------------------------------------------------------------------


def _sacct_exit_code(value: str) -> int | None:
    """`code:signal`, e.g. 3:0 (exit 3) or 0:9 (killed by SIGKILL)."""
    code, _, signal = value.partition(":")
    if not code.isdigit():
        return None
    if signal.isdigit() and int(signal):
        return 128 + int(signal)
    return int(code)


def _sacct_time(value: str) -> int | None:
    return int(value) if value.strip().isdigit() else None


def parse_sacct_text(text: str, prefix: str) -> dict[str, JobInfo]:
    """Rows of SACCT_FIELDS joined by SACCT_DELIMITER, times as unix seconds (SLURM_TIME_FORMAT=%s)."""
    out: dict[str, JobInfo] = {}
    n = len(SACCT_FIELDS)
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        parts = line.split(SACCT_DELIMITER)
        if len(parts) < n:
            continue
        parts = parts[: n - 1] + [SACCT_DELIMITER.join(parts[n - 1:])]  # the name is last
        row = dict(zip(SACCT_FIELDS, parts))
        name = row["JobName"]
        if not name.startswith(prefix):
            continue
        job_id = row["JobID"].strip()
        if not job_id or "." in job_id:  # steps (batch, extern) are not jobs
            continue
        state = normalise_state(_state_name(row["State"]))  # "CANCELLED by 0" -> CANCELLED
        start, end = _times(state, _sacct_time(row["Start"]), _sacct_time(row["End"]))
        info = JobInfo(
            job_id=job_id,
            node_id=name[len(prefix):] or None,
            state=state,
            reason=_reason(row["Reason"]),
            exit_code=_sacct_exit_code(row["ExitCode"]) if state in FINISHED else None,
            start=start,
            end=end,
            node_hash=row["Comment"] or None,
            scheduler_state=_scheduler_state(row["State"]),
        )
        for key in _expand_array_key(job_id):  # an array cancelled before it started: `12_[0-9]`
            out[key] = replace(info, job_id=key)
    return out
