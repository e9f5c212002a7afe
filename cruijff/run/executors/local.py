"""The local executor: a tiny in-process scheduler that runs job scripts as subprocesses.

`submit` only queues a job (like sbatch with afterok dependencies); `wait` runs the queue,
at most `max_parallel` at a time, and returns when every job is finished. A job whose parent
failed or was cancelled is cancelled without running (SLURM's --kill-on-invalid-dep). Each job
runs `bash job.sbatch` in its node directory, in its own session (so Ctrl-C reaches cruijff
only, and cruijff kills whole job trees), with CRUIJFF_JOB_ID set — the job script's id is
`${SLURM_JOB_ID:-$CRUIJFF_JOB_ID}`.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from cruijff.run.executors.base import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, Executor, JobInfo
from cruijff.plan import Node, Plan

JOB_ID_ENV = "CRUIJFF_JOB_ID"
JOB_OUT = "job.out"
# `cruijff cancel` asks a running local apply to cancel jobs: one JSON line {"job_ids": [...]} each.
CANCEL_REQUESTS = ".cruijff.cancel"
REQUEST_REASON = "cancelled by `cruijff cancel`"
_TERMINAL = (COMPLETED, FAILED, CANCELLED)
# Job ids: local-<per-process token>-<n>, unique across processes and executor instances.
_TOKEN = secrets.token_hex(3)
_COUNTER = itertools.count(1)


@dataclass
class _Job:
    info: JobInfo
    script: Path
    parents: list[str]
    proc: subprocess.Popen | None = None
    log: object | None = field(default=None, repr=False)


def _die_with_parent() -> None:
    """In the child: take SIGKILL when cruijff dies, even by SIGKILL (Linux; best effort)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_group(pgid: int, grace: float = 3.0) -> None:
    """SIGTERM a job's process group, then SIGKILL what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0)):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return
            time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def orphan_group(pgid: int | None, job_id: str) -> bool:
    """Whether process group `pgid` still runs local job `job_id` (left by a killed apply).

    Checks the environment of the group's processes, so a recycled pid is never mistaken for it.
    """
    if not pgid or not group_alive(pgid):
        return False
    needle = f"{JOB_ID_ENV}={job_id}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                return True
        except (OSError, ValueError, IndexError):
            continue
    return False


def read_requests(path: Path) -> set[str]:
    """Every job id asked for in a cancel-requests file (torn or foreign lines are skipped)."""
    try:
        text = path.read_text()
    except OSError:
        return set()
    out: set[str] = set()
    for line in text.splitlines():
        try:
            ids = json.loads(line).get("job_ids") or []
        except (ValueError, AttributeError):
            continue
        out.update(str(i) for i in ids)
    return out


class LocalExecutor(Executor):
    name = "local"
    runs_jobs = True

    def __init__(self, max_parallel: int = 1, poll: float = 0.05):
        self.max_parallel = max(1, int(max_parallel))
        self.poll = poll
        self._jobs: dict[str, _Job] = {}
        self._requests: Path | None = None  # the plan's cancel-requests file, read while running
        self._requests_seen: tuple[int, int] | None = None  # its (size, mtime_ns) when last read

    # --- Executor ------------------------------------------------------------------------
    def submit(self, plan: Plan, node: Node, parent_job_ids: list[str]) -> str:
        job_id = f"local-{_TOKEN}-{next(_COUNTER)}"
        info = JobInfo(job_id=job_id, node_id=node.id, state=PENDING, node_hash=node.hash)
        self._jobs[job_id] = _Job(info, Path(plan.output_dir) / node.script, list(parent_job_ids))
        self._requests = Path(plan.output_dir) / CANCEL_REQUESTS
        return job_id

    def jobs(self, plan: Plan) -> dict[str, JobInfo]:
        """The jobs this process queued; earlier runs are known from state.db and record.jsonl."""
        return {job_id: job.info for job_id, job in self._jobs.items()}

    def cancel(self, job_ids: list[str], reason: str = "cancelled") -> list[JobInfo]:
        """Cancel these jobs of this process (a running one: its process group); the cancelled."""
        out = []
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None or job.info.state in _TERMINAL:
                continue
            if job.proc is not None:
                kill_group(job.proc.pid)
                job.proc.wait()
            self._finish(job, CANCELLED, reason=reason)
            out.append(job.info)
        return out

    def _serve_requests(self, notify) -> None:
        """Cancel what `cruijff cancel` asked for since the last look (a stat when nothing new)."""
        if self._requests is None:
            return
        try:
            st = os.stat(self._requests)
        except OSError:
            return
        seen = (st.st_size, st.st_mtime_ns)
        if seen == self._requests_seen:
            return
        self._requests_seen = seen
        for info in self.cancel(sorted(read_requests(self._requests)), reason=REQUEST_REASON):
            notify(info, None)

    # --- running ---------------------------------------------------------------------------
    def wait(self, on_event: Callable[[JobInfo, int | None], None] | None = None) -> dict[str, JobInfo]:
        """Run every queued job; `on_event(info, pid)` on each start and finish.

        On Ctrl-C (or any exception) the running jobs are killed and reported cancelled with
        reason 'interrupted' before the exception propagates.
        """
        notify = on_event or (lambda info, pid: None)
        self._listen(True)
        try:
            while True:
                self._reap(notify)
                self._serve_requests(notify)
                self._cancel_blocked(notify)
                waiting = [j for j in self._jobs.values() if j.info.state == PENDING]
                running = [j for j in self._jobs.values() if j.info.state == RUNNING]
                if not waiting and not running:
                    return {job_id: job.info for job_id, job in self._jobs.items()}
                for job in waiting:
                    if len(running) >= self.max_parallel:
                        break
                    if all(self._parent_state(p) == COMPLETED for p in job.parents):
                        self._start(job)
                        running.append(job)
                        notify(job.info, job.proc.pid)
                time.sleep(self.poll)
        except BaseException:
            for job in self._jobs.values():
                if job.info.state in (PENDING, RUNNING):
                    if job.proc is not None:
                        kill_group(job.proc.pid, grace=1.0)
                        job.proc.wait()
                    self._finish(job, CANCELLED, reason="interrupted")
                    notify(job.info, None)
            raise
        finally:
            self._listen(False)

    def _listen(self, on: bool) -> None:
        """The requests file exists while jobs run: `cruijff cancel` then knows someone reads it."""
        if self._requests is None:
            return
        try:
            if on:
                self._requests.touch()
            else:
                self._requests.unlink(missing_ok=True)
        except OSError:
            pass

    def _parent_state(self, job_id: str) -> str:
        job = self._jobs.get(job_id)
        return job.info.state if job else CANCELLED  # an unknown dependency can never be met

    def _start(self, job: _Job) -> None:
        node_dir = job.script.parent
        env = dict(os.environ, **{JOB_ID_ENV: job.info.job_id})
        env.pop("SLURM_JOB_ID", None)  # a local job inside a SLURM allocation keeps its own id
        job.log = open(node_dir / JOB_OUT, "ab")
        job.proc = subprocess.Popen(
            ["bash", str(job.script)], cwd=node_dir, env=env, stdin=subprocess.DEVNULL,
            stdout=job.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        job.info = replace(job.info, state=RUNNING, start=time.time())

    def _reap(self, notify) -> None:
        for job in self._jobs.values():
            if job.info.state == RUNNING and job.proc.poll() is not None:
                code = job.proc.returncode
                if code < 0:  # killed by a signal: report it like a shell does
                    code = 128 - code
                self._finish(job, COMPLETED if code == 0 else FAILED, exit_code=code)
                notify(job.info, None)

    def _cancel_blocked(self, notify) -> None:
        changed = True
        while changed:
            changed = False
            for job in self._jobs.values():
                if job.info.state != PENDING:
                    continue
                dead = [p for p in job.parents if self._parent_state(p) in (FAILED, CANCELLED)]
                if dead:
                    parent = self._jobs.get(dead[0])
                    blocker = parent.info.node_id if parent else dead[0]
                    self._finish(job, CANCELLED, reason=f"DependencyNeverSatisfied: {blocker}")
                    notify(job.info, None)
                    changed = True

    def _finish(self, job: _Job, state: str, exit_code: int | None = None, reason: str | None = None) -> None:
        if job.log is not None:
            job.log.close()
            job.log = None
        job.info = replace(job.info, state=state, exit_code=exit_code, reason=reason, end=time.time())
