"""Fault harness against the real local SLURM: slow or lying `sbatch` wrappers on PATH, apply
SIGKILLed at random moments, and each node's jobs counted from squeue + sacct (never state.db).

Used by tests/integration/test_exactly_once_slurm.py and bench/kill_apply.py.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cruijff.plan import Plan
from cruijff.run.arrays import array_members, array_script_path

REPO = Path(__file__).resolve().parent.parent
REAL_SBATCH = shutil.which("sbatch") or "/usr/bin/sbatch"


def slow_sbatch(bin_dir: Path, delay: float) -> Path:
    """An `sbatch` that sleeps `delay` s, then runs the real one (as a busy controller would take
    seconds). It notes each call's start and end in bin_dir/calls, to tell kills that hit an
    sbatch in flight."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    calls = bin_dir / "calls"
    path = bin_dir / "sbatch"
    path.write_text(
        "#!/bin/bash\n"
        f"echo start >> {calls}\n"
        f"sleep {delay}\n"
        f'{REAL_SBATCH} "$@"\n'
        "rc=$?\n"
        f"echo end >> {calls}\n"
        "exit $rc\n"
    )
    path.chmod(0o755)
    return bin_dir


def late_sbatch(bin_dir: Path, delay: float) -> Path:
    """An `sbatch` that answers "Socket timed out" at once, while the real sbatch queues the job
    `delay` s later (its output detached, as a controller that got the request does), then writes
    `landed` to the calls file."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "sbatch"
    path.write_text(
        "#!/bin/bash\n"
        f"echo start >> {bin_dir / 'calls'}\n"
        f'( sleep {delay}; {REAL_SBATCH} "$@"; echo landed >> {bin_dir / "calls"} ) </dev/null >/dev/null 2>&1 &\n'
        "echo 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation' >&2\n"
        "exit 1\n"
    )
    path.chmod(0o755)
    return bin_dir


def landed(bin_dir: Path) -> bool:
    """Every call of the late wrapper has queued its job."""
    lines = (bin_dir / "calls").read_text().split()
    return lines.count("landed") == lines.count("start")


def eventually(condition, timeout: float = 30, every: float = 0.2) -> None:
    """Wait until condition() holds (instead of a fixed sleep); fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout} s: {condition.__doc__ or condition}"
        time.sleep(every)


def in_flight(bin_dir: Path) -> bool:
    """An sbatch of the slow wrapper is running now."""
    try:
        lines = (bin_dir / "calls").read_text().split()
    except FileNotFoundError:
        return False
    return lines.count("start") > lines.count("end")


def env_with(bin_dir: Path | None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra}
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


def cruijff(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, cwd=REPO,
                          env=env or env_with(None), timeout=timeout)


def _expand(job_id: str) -> list[str]:
    """sacct's `12_[0-3]` (a pending array) -> 12_0 ... 12_3."""
    from cruijff.compiler.batching import parse_task_ranges

    base, sep, tasks = job_id.partition("_")
    if sep and tasks.startswith("["):
        return [f"{base}_{t}" for t in parse_task_ranges(tasks)]
    return [job_id]


def scheduler_records(experiment: str) -> dict[str, tuple[str, str]]:
    """job id -> (job name, state) of this experiment's jobs and array tasks: squeue + sacct."""
    out: dict[str, tuple[str, str]] = {}
    a = subprocess.run(["sacct", "-X", "-n", "-P", "--starttime=now-6hours", "-o", "JobID,State,JobName%300"],
                       capture_output=True, text=True)
    q = subprocess.run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T|%j"], capture_output=True, text=True,
                       check=True)
    for line in a.stdout.splitlines() + q.stdout.splitlines():  # squeue last: the fresher state
        job_id, _, rest = line.strip().partition("|")
        state, _, name = rest.partition("|")
        if name.startswith(f"{experiment}:"):
            for key in _expand(job_id):
                out[key] = (name, state.split(" ")[0])
    return out


def node_jobs(plan: Plan, *, live_only: bool = False) -> dict[str, list[str]]:
    """Each node's jobs, from the scheduler alone: plain jobs by job name, array tasks by the
    plan's array scripts (task t of array/<kind>/<digest> runs the script's node t)."""
    prefix = f"{plan.experiment}:"
    members: dict[str, dict[int, tuple[str, str | None]]] = {}
    out: dict[str, list[str]] = {n.id: [] for n in plan.nodes}
    for job_id, (name, state) in scheduler_records(plan.experiment).items():
        if live_only and state not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            continue
        node = name[len(prefix):]
        if node.startswith("array/"):
            if node not in members:
                try:
                    members[node] = array_members(array_script_path(plan.output_dir, node).read_text())
                except OSError:
                    members[node] = {}
            _, _, task = job_id.partition("_")
            member = members[node].get(int(task)) if task.isdigit() else None
            node = member[0] if member else f"?{node}:{task}"
        out.setdefault(node, []).append(job_id)
    return out


def cancel_experiment(experiment: str) -> None:
    """scancel every live job of this experiment (by name: jobs of other tests are never touched).
    By `%i` (`12_3`, `12_[0-4]`): scancel ignores an array task's own job id (`%A`) in 22.05."""
    q = subprocess.run(["squeue", "-h", "-o", "%i|%j"], capture_output=True, text=True)
    ids = sorted({line.split("|", 1)[0] for line in q.stdout.splitlines()
                  if line.partition("|")[2].startswith(f"{experiment}:")})
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, text=True)


@dataclass
class KillStats:
    kills: int = 0
    in_flight: int = 0  # kills that hit an sbatch still running
    duplicates: int = 0  # nodes with more than one job
    missing: int = 0  # nodes with no job
    reapply_s: list[float] = field(default_factory=list)  # the final (unkilled) apply's wall time
    waited_s: list[float] = field(default_factory=list)  # what it reported waiting for in-flight sbatch


def kill_round(plan: Plan, bin_dir: Path, rng: random.Random, kills: int, window: float,
               stats: KillStats) -> dict[str, list[str]]:
    """`kills` applies each SIGKILLed at a random moment in [0, window) s, each started at once
    after the last; then one apply left to finish. Returns each node's jobs (squeue + sacct)."""
    import json

    env = env_with(bin_dir)
    argv = [sys.executable, "-m", "cruijff", "apply", plan.output_dir, "--executor", "slurm", "--json"]
    for _ in range(kills):
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.0, window))
        if proc.poll() is None:
            flying = in_flight(bin_dir)
            proc.kill()
            stats.kills += 1
            stats.in_flight += flying
        proc.wait()
    started = time.monotonic()
    final = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    stats.reapply_s.append(time.monotonic() - started)
    if final.returncode != 0:
        raise AssertionError(f"the final apply failed (rc {final.returncode}): {final.stderr}")
    stats.waited_s.append(json.loads(final.stdout).get("waited_s", 0.0))
    deadline = time.monotonic() + 30
    while in_flight(bin_dir) and time.monotonic() < deadline:  # count after every sbatch ended
        time.sleep(0.2)
    time.sleep(0.3)
    jobs = node_jobs(plan)
    stats.duplicates += sum(1 for j in jobs.values() if len(j) > 1)
    stats.missing += sum(1 for j in jobs.values() if not j)
    return jobs
