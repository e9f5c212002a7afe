"""What the cluster allows: scontrol's MaxArraySize/MaxJobCount/MessageTimeout, sinfo nodes, the user's job limit."""

from __future__ import annotations

from cruijff.errors import SchedulerError
from cruijff.run.executors.slurm.cli import Runner, _clean_stderr, _run, default_runner


DEFAULT_MAX_ARRAY_SIZE = 1001  # SLURM's default, when scontrol does not say
DEFAULT_MESSAGE_TIMEOUT_S = 10  # SLURM's MessageTimeout default, when scontrol does not say


def _seconds(value: str) -> int | None:
    """`10 sec` (scontrol's form) or `10` -> 10."""
    head = value.strip().split(" ", 1)[0]
    return int(head) if head.isdigit() else None


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
