"""The SLURM executor: drives sbatch, squeue, sacct and scancel (pyslurm does not build for 22.05).

Every call goes through one injectable runner, so unit tests replay recorded cluster output.
Shapes of the JSON and text this module parses are written down in docs/dev/slurm.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cruijff.compiler.batching import parse_task_ranges, task_ranges
from cruijff.errors import SchedulerError
from cruijff.run.executors.base import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    UNKNOWN,
    ArraySubmission,
    Executor,
    JobInfo,
    Outcome,
    SubmitRefused,
    SubmitUnknown,
)
from cruijff.plan import Node, Plan

# runner(argv, env_overrides) -> CompletedProcess with text stdout/stderr; raises
# FileNotFoundError when the program is missing and subprocess.TimeoutExpired on a hang.
Runner = Callable[[list[str], Mapping[str, str] | None], subprocess.CompletedProcess]

COMMAND_TIMEOUT_S = 120
DEFAULT_SUBMIT_RATE = 10.0  # sbatch calls per second at most (manifest: cluster.submit_rate)
DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default, when scontrol does not say
DEFAULT_MESSAGE_TIMEOUT_S = 10  # SLURM's MessageTimeout default, when scontrol does not say
SETTLE_FACTOR = 2  # an sbatch that timed out may still land this many MessageTimeouts later
SETTLE_POLL_S = 1.0
JOURNAL_DIR = ".sbatch"  # <output_dir>/.sbatch/<key>.out: what each sbatch printed (see journal_runner)

# Scheduler answers that mean "ask again later" (slurmctld busy, restarting or unreachable).
TRANSIENT_MARKERS = (
    "socket timed out",
    "unable to contact slurm controller",
    "resource temporarily unavailable",
    "try again",
    "connection refused",
    "connection timed out",
    "communication connection failure",
    "communications connection failure",
    "zero bytes were transmitted or received",
    "slurmctld is busy",
    "slurm_receive_msg",
    "timed out",
)
# Of those, the answers after which the request may still have reached slurmctld: the job may
# appear later, so sbatch is not simply run again (see SlurmExecutor._sbatch).
UNKNOWN_OUTCOME_MARKERS = (
    "socket timed out",
    "timed out",
    "zero bytes were transmitted or received",
    "slurm_receive_msg",
    "communication connection failure",
    "communications connection failure",
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


def default_runner(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env} if env else None
    return subprocess.run(
        argv, capture_output=True, text=True, env=full_env, timeout=COMMAND_TIMEOUT_S, check=False
    )


def slurm_available() -> bool:
    """For `executor: auto`: SLURM is there when sbatch is on PATH."""
    return shutil.which("sbatch") is not None


def journal_path(root: str | Path, name: str, comment: str) -> Path:
    """Where the sbatch of the job (or array) `name` with this comment writes what it prints."""
    key = hashlib.sha256(f"{name}\0{comment}".encode()).hexdigest()[:16]
    return Path(root) / JOURNAL_DIR / f"{key}.out"


def journal_runner(argv: list[str], journal: Path) -> subprocess.CompletedProcess:
    """Run sbatch with its stdout and stderr in `journal`, a file whose flock the sbatch process
    inherits: if apply dies meanwhile, sbatch runs on and finishes writing, and the next apply
    knows it is still running (the file is locked) and then reads what it printed."""
    journal.parent.mkdir(parents=True, exist_ok=True)
    with open(journal, "w+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        os.utime(f.fileno())  # the attempt's time, even where truncating an empty file keeps it
        proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=COMMAND_TIMEOUT_S, check=False)
        f.seek(0)
        text = f.read()
    return subprocess.CompletedProcess(argv, proc.returncode, text, text if proc.returncode else "")


def _journal_locked(path: Path) -> bool:
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
    except OSError:
        return False
    return False


def _seconds(value: str) -> int | None:
    """`10 sec` (scontrol's form) or `10` -> 10."""
    head = value.strip().split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def outcome_unknown(stderr: str) -> bool:
    low = (stderr or "").lower()
    return any(m in low for m in UNKNOWN_OUTCOME_MARKERS)


def cluster_limits(runner: Runner = default_runner) -> dict[str, int]:
    """MaxArraySize, MaxJobCount and MessageTimeout (seconds) from `scontrol show config`
    (absent keys are left out)."""
    proc = _run(runner, ["scontrol", "show", "config"])
    if proc.returncode != 0:
        raise SchedulerError(
            f"scontrol show config failed: {_clean_stderr(proc.stderr, 'scontrol')}",
            hint="check that slurmctld answers: scontrol ping",
        )
    config = parse_scontrol_config(proc.stdout)
    limits = {}
    for key in ("MaxArraySize", "MaxJobCount"):
        value = config.get(key, "")
        if value.isdigit():
            limits[key] = int(value)
    timeout = _seconds(config.get("MessageTimeout", ""))
    if timeout:
        limits["MessageTimeout"] = timeout
    return limits


def sinfo_nodes(runner: Runner, node_format: str) -> str:
    """`sinfo -h -N -o FORMAT`: one line per node and partition (for cruijff.compiler.capacity.resource_problems)."""
    proc = _run(runner, ["sinfo", "-h", "-N", "-o", node_format])
    if proc.returncode != 0:
        raise SchedulerError(f"sinfo failed: {_clean_stderr(proc.stderr, 'sinfo')}",
                             hint="check that slurmctld answers: scontrol ping")
    return proc.stdout


def submit_limit(assoc_text: str, qos_text: str, *, account: str | None = None,
                 qos: str | None = None) -> tuple[int, str] | None:
    """The user's queued-job limit and where it comes from, from sacctmgr's parsable output.

    assoc_text: `Account|Partition|MaxSubmit|GrpSubmit|QOS|DefaultQOS` rows of the user's
    associations (only the charged account's when `account` is given); qos_text: `Name|MaxSubmitPU`
    rows. The smallest of the associations' MaxSubmit/GrpSubmit and the job's QOS's MaxSubmitPU.
    """
    found: list[tuple[int, str]] = []
    qos_names: set[str] = set()
    rows = [parts for parts in (line.split("|") for line in assoc_text.splitlines()) if len(parts) >= 6]
    if account and any(parts[0] == account for parts in rows):
        rows = [parts for parts in rows if parts[0] == account]  # else: all of them, the strictest
    for parts in rows:
        for value, what in ((parts[2], "MaxSubmitJobs"), (parts[3], "GrpSubmitJobs")):
            if value.strip().isdigit():
                found.append((int(value), f"{what} of your association with account {parts[0]}"))
        qos_names.add(qos or parts[5] or "normal")
    if qos:
        qos_names = {qos}
    for line in qos_text.splitlines():
        name, _, value = line.partition("|")
        value = value.split("|", 1)[0]
        if name in qos_names and value.strip().isdigit():
            found.append((int(value), f"MaxSubmitJobsPerUser of QOS {name}"))
    return min(found) if found else None


def parse_scontrol_config(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and " " not in key.strip():
            out[key.strip()] = value.strip()
    return out


class SlurmExecutor(Executor):
    """Submits each node's job.sbatch with afterok dependencies on its parents' jobs."""

    name = "slurm"

    def __init__(
        self,
        runner: Runner = default_runner,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        attempts: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        sacct_window_days: int = SACCT_WINDOW_DAYS,
        arrays: bool = True,
        submit_rate: float | None = DEFAULT_SUBMIT_RATE,
        account: str | None = None,
        qos: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        settle_s: float | None = None,
        submit_runner: Callable[[list[str], Path], subprocess.CompletedProcess] | None = None,
    ):
        self.runner = runner
        self.sleep = sleep
        self.clock = clock
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sacct_window_days = sacct_window_days
        self.arrays = arrays
        self.min_interval = 1.0 / submit_rate if submit_rate else 0.0
        self.account = account
        self.qos = qos
        self.monotonic = monotonic
        self._settle_s = settle_s
        if submit_runner is None and runner is default_runner:
            submit_runner = journal_runner
        self.submit_runner = submit_runner
        self._seen_running: dict[Path, float] = {}
        self.sbatch_calls = 0
        self._last_sbatch: float | None = None
        self._limits: dict[str, Any] | None = None
        self.queued: tuple[int, int] | None = None  # (all job records, this user's live jobs), from jobs()

    @classmethod
    def for_plan(cls, cluster: dict) -> "SlurmExecutor":
        """Settings from the manifest's cluster block (arrays, submit_rate, account, qos)."""
        rate = cluster.get("submit_rate", DEFAULT_SUBMIT_RATE)
        return cls(arrays=cluster.get("arrays", True), submit_rate=rate or None,
                   account=cluster.get("account"), qos=cluster.get("qos"))

    # --- Executor -------------------------------------------------------------------------

    def submit(self, plan: Plan, node: Node, parent_job_ids: list[str]) -> str:
        argv = self.sbatch_argv(plan, node, parent_job_ids)
        return self._sbatch(plan, argv, node.id, node.id, node.hash)

    def submit_array(self, plan: Plan, array: ArraySubmission) -> str:
        argv = self.array_argv(plan, array)
        return self._sbatch(plan, argv, f"job array {array.name} ({len(array.tasks)} tasks)", array.name,
                            array.digest)

    def settle_window(self) -> float:
        """How long after an sbatch ended without an answer its job may still appear: SETTLE_FACTOR
        × SLURM's MessageTimeout (20 s with the default 10 s)."""
        if self._settle_s is None:
            try:
                timeout = self.limits().get("MessageTimeout", DEFAULT_MESSAGE_TIMEOUT_S)
            except SchedulerError:
                timeout = DEFAULT_MESSAGE_TIMEOUT_S
            self._settle_s = float(SETTLE_FACTOR * timeout)
        return self._settle_s

    def submission_outcome(self, plan: Plan, name: str, comment: str, since: float) -> Outcome:
        """Read the journal an interrupted apply's sbatch wrote (journal_runner)."""
        path = journal_path(plan.output_dir, name, comment)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return Outcome()  # apply died before starting sbatch (or it succeeded and was recorded)
        if mtime < since - 2:
            return Outcome()  # an earlier submission's journal: this attempt never started sbatch
        if _journal_locked(path):
            self._seen_running[path] = self.clock()
            return Outcome(running=True, wait_until=mtime + COMMAND_TIMEOUT_S + self.settle_window())
        try:
            text = path.read_text()
        except OSError:
            text = ""
        for line in text.splitlines():
            job_id = line.strip().split(";", 1)[0]
            if job_id.isdigit():
                return Outcome(job_id=job_id)
        if text.strip() and not outcome_unknown(text):
            if is_transient(text):
                return Outcome()  # never reached slurmctld (connection refused, busy): nothing queued
            return Outcome(refused=f"sbatch refused {name}: {_clean_stderr(text, 'sbatch')}")
        ended = max(mtime, self._seen_running.get(path, 0.0))
        return Outcome(wait_until=ended + self.settle_window())

    def batch_script(self, job_id: str) -> str | None:
        """`scontrol write batch_script`: slurmctld keeps a live job's script (arrays: any task)."""
        array_id = job_id.partition("_")[0]
        try:
            proc = _run(self.runner, ["scontrol", "write", "batch_script", array_id, "-"])
        except SchedulerError:
            return None
        return proc.stdout if proc.returncode == 0 and proc.stdout.strip() else None

    def array_limit(self) -> int:
        return self.limits().get("MaxArraySize", DEFAULT_MAX_ARRAY_SIZE) if self.arrays else 0

    def limits(self) -> dict[str, Any]:
        """The cluster's MaxArraySize and MaxJobCount, and the user's `submit_limit`: (jobs, source)
        from sacctmgr where it says one. Read once per executor."""
        if self._limits is None:
            limits: dict[str, Any] = dict(cluster_limits(lambda argv, env=None: self._call(argv, env)))
            submit = self._read_submit_limit()
            if submit is not None:
                limits["submit_limit"] = submit
            self._limits = limits
        return self._limits

    def check_room(self, n_jobs: int) -> None:
        limits = self.limits()
        all_jobs, mine = self.queued or (0, 0)
        submit = limits.get("submit_limit")
        if submit is not None and mine + n_jobs > submit[0]:
            limit, source = submit
            raise SchedulerError(
                f"this apply would queue {n_jobs:,} jobs, but SLURM lets you have at most {limit:,} queued "
                f"({source}) and you have {mine:,} queued already; nothing was submitted",
                hint="every array task counts as one job: apply part of the experiment with --only "
                     "(e.g. --only model:NAME) and the rest once it has finished, or ask your admins to "
                     "raise the limit (sacctmgr show assoc user=$USER)",
            )
        max_jobs = limits.get("MaxJobCount")
        if max_jobs and all_jobs + n_jobs > max_jobs:
            raise SchedulerError(
                f"this apply would queue {n_jobs:,} jobs, but the cluster holds at most {max_jobs:,} "
                f"(MaxJobCount) and has {all_jobs:,} already; nothing was submitted",
                hint="apply part of the experiment with --only and the rest later, or ask your admins "
                     "to raise MaxJobCount",
            )

    def jobs(self, plan: Plan) -> dict[str, JobInfo]:
        """squeue's live jobs over sacct's finished ones. The two are asked at once (sacct in a
        thread): either may answer first, as squeue wins for every job it still knows."""
        accounting: dict[str, Any] = {}

        def ask_sacct() -> None:
            try:
                accounting["jobs"] = self.finished_jobs(plan)
            except BaseException as e:  # raised in the caller's thread below
                accounting["error"] = e

        worker = threading.Thread(target=ask_sacct, name="sacct", daemon=True)
        worker.start()
        try:
            live = self._live_jobs(plan)
        finally:
            worker.join()
        if "error" in accounting:
            raise accounting["error"]
        return {**accounting["jobs"], **live}

    def _live_jobs(self, plan: Plan) -> dict[str, JobInfo]:
        prefix = f"{plan.experiment}:"
        proc = self._call(["squeue", "--json", "--me"])
        if proc.returncode != 0:
            raise SchedulerError(
                f"squeue failed: {_clean_stderr(proc.stderr, 'squeue')}",
                hint="check that slurmctld answers: scontrol ping",
            )
        data = _load_squeue(proc.stdout)
        errors = squeue_errors(data)
        if errors:  # 22.05 exits 0 with {"errors": [...], "jobs": []} when slurmctld is unreachable
            raise SchedulerError(
                f"the SLURM scheduler is unreachable: squeue could not read the queue ({errors}); "
                "nothing was submitted, cancelled or shown, as cruijff will not guess which jobs exist",
                hint="the SLURM controller does not answer: check `scontrol ping` and try again",
            )
        uid = os.getuid()
        self.queued = queue_counts(data, uid)
        return parse_squeue_json(data, prefix, uid=uid)

    def cancel(self, job_ids: list[str]) -> None:
        ids = compact_job_ids(str(j) for j in job_ids if str(j).strip())
        if not ids:
            return
        proc = self._call(["scancel", *ids])
        if proc.returncode != 0:
            raise SchedulerError(
                f"scancel failed: {_clean_stderr(proc.stderr, 'scancel')}",
                hint=f"run it by hand: {shlex.join(['scancel', *ids])}",
            )

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def sbatch_argv(plan: Plan, node: Node, parent_job_ids: Iterable[str]) -> list[str]:
        """The sbatch command line; resources come from the script's own #SBATCH lines."""
        out = Path(plan.output_dir)
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={plan.experiment}:{node.id}",
            f"--comment={node.hash}",
            # The node dir: relative paths and SLURM's default slurm-<id>.out land there.
            f"--chdir={out / node.dir}",
        ]
        parents = [str(p) for p in parent_job_ids]
        if parents:
            argv.append("--dependency=afterok:" + ":".join(parents))
        # A failed parent cancels the child instead of leaving it pending forever.
        argv.append("--kill-on-invalid-dep=yes")
        argv.append(str(out / node.script))
        return argv

    @staticmethod
    def array_argv(plan: Plan, array: ArraySubmission) -> list[str]:
        spec = task_ranges(array.tasks) + (f"%{array.throttle}" if array.throttle else "")
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name={plan.experiment}:{array.name}",
            f"--comment={array.digest}",
            f"--array={spec}",
            f"--chdir={plan.output_dir}",
        ]
        deps = []
        if array.after_ok:
            deps.append("afterok:" + ":".join(array.after_ok))
        if array.after_corr:
            deps.append(f"aftercorr:{array.after_corr}")
        if deps:
            argv.append("--dependency=" + ",".join(deps))
        argv.append("--kill-on-invalid-dep=yes")
        argv.append(array.script)
        return argv

    def _sbatch(self, plan: Plan, argv: list[str], what: str, name: str, comment: str) -> str:
        """Submit once. A refusal raises SubmitRefused. A busy controller is retried with backoff;
        an answer lost to a timeout is an unknown outcome: the queue is watched for the job (same
        name and comment) for settle_window() before sbatch runs again, never at once."""
        journal = journal_path(plan.output_dir, name, comment)
        since = self.clock() - 5
        delay = self.backoff_s
        if self.min_interval and self._last_sbatch is not None:  # retries are spaced by their own waits
            wait = self._last_sbatch + self.min_interval - self.monotonic()
            if wait > 0:
                self.sleep(wait)
        for attempt in range(1, self.attempts + 1):
            self._last_sbatch = self.monotonic()
            self.sbatch_calls += 1
            proc = self._submit_once(argv, journal)
            if proc.returncode == 0:
                job_id = parse_sbatch_output(proc.stdout, what)
                journal.unlink(missing_ok=True)
                return job_id
            err = proc.stderr or proc.stdout
            if not is_transient(err):
                raise SubmitRefused(f"sbatch refused {what}: {_clean_stderr(err, 'sbatch')}",
                                    hint=_sbatch_hint(err, argv),
                                    phantom=self._find_job(plan, name, comment, since)[1])
            if outcome_unknown(err):
                seen, job_id = self._await_landing(plan, name, comment, since)
                if job_id:
                    journal.unlink(missing_ok=True)
                    return job_id
                if not seen:
                    raise SubmitUnknown(
                        f"sbatch of {what} timed out ({_clean_stderr(err, 'sbatch')}) and squeue did not "
                        f"answer: whether it was queued is unknown",
                        hint="re-run `cruijff apply` once slurmctld answers (scontrol ping): it looks for "
                             "the job before submitting it again")
            elif attempt < self.attempts:
                self.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
                seen, job_id = self._find_job(plan, name, comment, since)
                if job_id:
                    return job_id
        raise SchedulerError(
            f"sbatch kept failing with a transient error after {self.attempts} attempts: "
            f"{_clean_stderr(err, 'sbatch')}",
            hint="slurmctld is busy or unreachable; try again later (scontrol ping)",
        )

    def _submit_once(self, argv: list[str], journal: Path) -> subprocess.CompletedProcess:
        if self.submit_runner is not None:
            return _run(lambda a, env=None: self.submit_runner(a, journal), argv)
        proc = _run(self.runner, argv)
        try:  # an injected runner: the journal written afterwards (tests of submission_outcome)
            journal.parent.mkdir(parents=True, exist_ok=True)
            journal.write_text((proc.stdout or "") + (proc.stderr or ""))
        except OSError:
            pass
        return proc

    def _await_landing(self, plan: Plan, name: str, comment: str, since: float) -> tuple[bool, str | None]:
        """Watch the queue for settle_window() seconds: (the queue answered, the job id if it landed)."""
        seen = False
        for _ in range(max(1, math.ceil(self.settle_window() / SETTLE_POLL_S))):
            self.sleep(SETTLE_POLL_S)
            answered, job_id = self._find_job(plan, name, comment, since)
            if job_id:
                return True, job_id
            seen = answered
        return seen, None

    def _read_submit_limit(self) -> tuple[int, str] | None:
        """From sacctmgr, where there is one; None when it is absent or does not answer."""
        import pwd

        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            return None
        try:
            assoc = _run(self.runner, ["sacctmgr", "-nP", "show", "assoc", f"users={user}",
                                       "format=Account,Partition,MaxSubmit,GrpSubmit,QOS,DefaultQOS"])
            qos = _run(self.runner, ["sacctmgr", "-nP", "show", "qos", "format=Name,MaxSubmitPU"])
        except SchedulerError:
            return None
        if assoc.returncode != 0:
            return None
        return submit_limit(assoc.stdout, qos.stdout if qos.returncode == 0 else "",
                            account=self.account, qos=self.qos)

    def sacct_argv(self) -> list[str]:
        since = time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(self.clock() - self.sacct_window_days * 86400)
        )
        return [
            "sacct",
            "--noheader",
            "--parsable2",
            f"--delimiter={SACCT_DELIMITER}",
            "--allocations",
            f"--starttime={since}",
            "--endtime=now",
            f"--state={SACCT_STATES}",
            f"--format={','.join(SACCT_FIELDS)}",
        ]

    def finished_jobs(self, plan: Plan) -> dict[str, JobInfo]:
        """Finished jobs of this experiment from accounting; {} where accounting is disabled.

        Any other failure raises: an accounting database that does not answer is not "no jobs"."""
        prefix = f"{plan.experiment}:"
        try:
            proc = self._call(self.sacct_argv(), env={"SLURM_TIME_FORMAT": "%s"}, attempts=1)
        except SchedulerError as e:
            if isinstance(e.__cause__, FileNotFoundError):
                return {}  # no sacct at all: a cluster without accounting
            raise SchedulerError(f"{e.message}; cruijff will not guess which jobs finished, so nothing was "
                                 "submitted, cancelled or shown", hint=e.hint) from None
        if proc.returncode != 0:
            if ACCOUNTING_DISABLED in f"{proc.stderr}\n{proc.stdout}".lower():
                return {}
            raise SchedulerError(
                f"sacct failed: {_clean_stderr(proc.stderr or proc.stdout, 'sacct')}; cruijff will not guess "
                "which jobs finished, so nothing was submitted, cancelled or shown",
                hint="the SLURM accounting database (slurmdbd) does not answer: check `sacct` by hand and try again",
            )
        return parse_sacct_text(proc.stdout, prefix)

    def _find_job(self, plan: Plan, name_part: str, comment: str, since: float) -> tuple[bool, str | None]:
        """(squeue answered, the job an sbatch since `since` created: same name and comment)."""
        try:
            proc = _run(self.runner, ["squeue", "--json", "--me"])
            if proc.returncode != 0:
                return False, None
            data = json.loads(proc.stdout)
            if data.get("errors"):
                return False, None
            jobs = data.get("jobs") or []
        except (SchedulerError, ValueError, AttributeError):
            return False, None
        name = f"{plan.experiment}:{name_part}"
        for job in jobs:
            submitted = _number(job.get("submit_time")) or 0
            if job.get("name") == name and job.get("comment") == comment and submitted >= since:
                return True, str(_number(job.get("array_job_id")) or _number(job.get("job_id")))
        return True, None

    def _call(
        self,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        attempts: int | None = None,
        recover: Callable[[], str | None] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run argv, retrying transient scheduler errors with exponential backoff.

        recover, asked before each retry, may find that the failed call took effect after all
        (sbatch's "Socket timed out" can come after slurmctld queued the job): its answer is
        returned as the command's stdout instead of running the command again.
        """
        attempts = attempts or self.attempts
        delay = self.backoff_s
        for attempt in range(1, attempts + 1):
            proc = _run(self.runner, argv, env)
            if proc.returncode == 0 or not is_transient(proc.stderr):
                return proc
            if attempt == attempts:
                tries = f" kept failing with a transient error after {attempts} attempts" if attempts > 1 else " failed"
                raise SchedulerError(
                    f"{argv[0]}{tries}: {_clean_stderr(proc.stderr, argv[0])}",
                    hint="slurmctld is busy or unreachable; try again later (scontrol ping)",
                )
            self.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)
            found = recover() if recover else None
            if found:
                return subprocess.CompletedProcess(argv, 0, f"{found}\n", "")
        raise AssertionError("unreachable")


def _run(runner: Runner, argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    try:
        return runner(argv, env)
    except FileNotFoundError as e:
        raise SchedulerError(
            f"{argv[0]} not found on PATH",
            hint="run cruijff on a SLURM login node, or set `executor: local` in the manifest",
        ) from e
    except subprocess.TimeoutExpired:
        # Reported like slurmctld's own timeout so that the caller retries it.
        return subprocess.CompletedProcess(argv, 1, "", f"{argv[0]}: error: Socket timed out (no answer)")


def is_transient(stderr: str) -> bool:
    low = (stderr or "").lower()
    return any(m in low for m in TRANSIENT_MARKERS)


def _clean_stderr(stderr: str, program: str) -> str:
    """SLURM's error lines without their `sbatch: error: ` prefixes, on one line."""
    lines = []
    for line in (stderr or "").splitlines():
        line = line.strip()
        line = re.sub(rf"^{re.escape(program)}:\s*(error:|fatal:)?\s*", "", line)
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines) or "(no message)"


def _sbatch_hint(stderr: str, argv: list[str]) -> str:
    low = (stderr or "").lower()
    if "requested node configuration is not available" in low or "memory specification" in low:
        hint = "the job asks for more GPUs, CPUs or memory than any node offers; lower its resources"
    elif "invalid partition" in low:
        hint = "the partition in the job script does not exist here; see `sinfo` for the partitions"
    elif "unable to open file" in low:
        hint = "the job script is missing; re-run `cruijff plan` to write the plan directory"
    elif "invalid account" in low or "association" in low:
        hint = "SLURM does not know your account/partition pairing; set the right account (sacctmgr show assoc)"
    elif "invalid job array specification" in low:
        hint = ("the array is larger than the cluster's MaxArraySize allows; apply reads it with "
                "`scontrol show config` and splits arrays to fit, so it may have changed: re-run `cruijff apply`")
    elif "qosmaxsubmitjob" in low or "maxsubmit" in low:
        hint = "you have too many jobs queued for this QOS; wait for some to finish or cancel some"
    else:
        hint = "fix the job or cluster settings"
    return f"{hint}. The command was: {shlex.join(argv)}"


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
        )
        for key in _expand_array_key(job_id):  # an array cancelled before it started: `12_[0-9]`
            out[key] = replace(info, job_id=key)
    return out
