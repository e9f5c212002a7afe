"""SlurmExecutor: submit (plain jobs and arrays), observe (squeue, then sacct) and cancel through the runner.

The class is long because the Executor interface is wide (submit, arrays, jobs, cancel,
limits, wait); each method is short and the parsing and process calls live in parse/cli/limits."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cruijff.compiler.batching import task_ranges
from cruijff.errors import SchedulerError
from cruijff.run.executors.base import (
    ArraySubmission,
    Executor,
    JobInfo,
    Outcome,
    SubmitRefused,
    SubmitUnknown,
)
from cruijff.plan import Node, Plan
from cruijff.run.executors.slurm.cli import (
    COMMAND_TIMEOUT_S,
    Runner,
    _clean_stderr,
    _journal_locked,
    _run,
    _sbatch_hint,
    default_runner,
    is_transient,
    journal_path,
    journal_runner,
    outcome_unknown,
)
from cruijff.run.executors.slurm.limits import (
    DEFAULT_MAX_ARRAY_SIZE,
    DEFAULT_MESSAGE_TIMEOUT_S,
    cluster_limits,
    submit_limit,
)
from cruijff.run.executors.slurm.parse import (
    ACCOUNTING_DISABLED,
    SACCT_DELIMITER,
    SACCT_FIELDS,
    SACCT_STATES,
    SACCT_WINDOW_DAYS,
    _load_squeue,
    _number,
    compact_job_ids,
    parse_sacct_text,
    parse_sbatch_output,
    parse_squeue_json,
    queue_counts,
    squeue_errors,
)


DEFAULT_SUBMIT_RATE = 10.0  # sbatch calls per second at most (manifest: cluster.submit_rate)
SETTLE_FACTOR = 2  # an sbatch that timed out may still land this many MessageTimeouts later
SETTLE_POLL_S = 1.0


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
