"""Calling the Slurm programs: the injectable runner, the sbatch journal, retries of transient errors, readable stderr."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from cruijff.errors import SchedulerError

# runner(argv, env_overrides) -> CompletedProcess with text stdout/stderr; raises
# FileNotFoundError when the program is missing and subprocess.TimeoutExpired on a hang.
Runner = Callable[[list[str], Mapping[str, str] | None], subprocess.CompletedProcess]

COMMAND_TIMEOUT_S = 120
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


def outcome_unknown(stderr: str) -> bool:
    low = (stderr or "").lower()
    return any(m in low for m in UNKNOWN_OUTCOME_MARKERS)


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
