"""What `cruijff plan` asks SLURM, cached per cluster: limits, node shapes, the user's submit limit.

Limits and partitions change rarely, but asking for them costs four programs (scontrol, sinfo and
two sacctmgr calls, the last going to slurmdbd, which is remote and often slow on a real cluster).
So plan reads them through here:

- the four queries run side by side (threads waiting on subprocesses), each under a timeout;
- the answers are kept in a small JSON file per cluster and user ($CRUIJFF_CACHE_DIR, else
  $XDG_CACHE_HOME/cruijff, else ~/.cache/cruijff) with the time they were read, and used again
  until they are MAX_AGE_S old, until slurm.conf changes (its path, size and mtime are part of the
  key), or until `cruijff plan --refresh-cluster` asks again;
- sacctmgr gets SACCTMGR_TIMEOUT_S: when it does not answer in time (or fails), the submit limit
  is "not checked" (a line plan prints), and that answer is kept only NOT_CHECKED_MAX_AGE_S.

scontrol or sinfo failing is a SchedulerError as before, and nothing is cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cruijff.errors import SchedulerError
from cruijff.paths import cache_dir
from cruijff.run.executors.slurm.cli import Runner, _clean_stderr
from cruijff.run.executors.slurm.limits import _seconds, parse_scontrol_config, submit_limit

CACHE_VERSION = 1
MAX_AGE_S = 3600.0  # cluster facts older than this are read again
NOT_CHECKED_MAX_AGE_S = 300.0  # facts without the submit limit (sacctmgr did not answer): ask again sooner
SACCTMGR_TIMEOUT_S = 3.0
QUERY_TIMEOUT_S = 20.0  # scontrol and sinfo (slurmctld answers them; MessageTimeout is 10 s by default)
ASSOC_FORMAT = "format=Account,Partition,MaxSubmit,GrpSubmit,QOS,DefaultQOS"


@dataclass
class ClusterFacts:
    """The raw answers (parsed by the caller), when they were read and what could not be checked."""

    config: dict[str, int]  # MaxArraySize, MaxJobCount, MessageTimeout (those scontrol gave)
    sinfo: str  # `sinfo -h -N -o FORMAT` output
    assoc: str | None  # sacctmgr's association rows; None: not checked
    qos: str | None
    read_at: float
    cached: bool = False
    not_checked: list[str] = field(default_factory=list)

    def limits(self, *, account: str | None = None, qos: str | None = None) -> dict[str, Any]:
        """As SlurmExecutor.limits(): the config limits and the user's submit_limit where there is one."""
        out: dict[str, Any] = dict(self.config)
        if self.assoc is not None:
            submit = submit_limit(self.assoc, self.qos or "", account=account, qos=qos)
            if submit is not None:
                out["submit_limit"] = submit
        return out


def timed_runner(timeout_s: float) -> Runner:
    """The default runner with its own timeout (subprocess kills the program when it passes)."""
    def run(argv: list[str], env=None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, **env} if env else None
        return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=timeout_s, check=False)
    return run


def _slurm_conf() -> tuple[str, str]:
    """(ClusterName, a key of slurm.conf's identity): a changed slurm.conf is another cluster state."""
    path = os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf"
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
        ident = f"{real}:{st.st_size}:{st.st_mtime_ns}"
        name = "cluster"
        with open(real, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition("=")
                if sep and key.strip().lower() == "clustername":
                    name = value.split("#", 1)[0].strip() or name
                    break
    except OSError:
        return "cluster", f"{path}:absent"
    return name, ident


def cache_path(directory: Path | None = None) -> Path:
    name, ident = _slurm_conf()
    key = hashlib.sha256(f"{ident}\0{os.getuid()}\0{os.environ.get('SLURM_CLUSTERS', '')}".encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return (directory or cache_dir()) / f"cluster-{safe}-{key}.json"


def _read_cache(path: Path, now: float, max_age_s: float, sinfo_format: str) -> ClusterFacts | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != CACHE_VERSION or data.get("sinfo_format") != sinfo_format:
            return None
        facts = ClusterFacts(config={k: int(v) for k, v in data["config"].items()}, sinfo=str(data["sinfo"]),
                             assoc=data.get("assoc"), qos=data.get("qos"), read_at=float(data["read_at"]),
                             cached=True, not_checked=list(data.get("not_checked", [])))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    age = now - facts.read_at
    limit = max_age_s if facts.assoc is not None else min(max_age_s, NOT_CHECKED_MAX_AGE_S)
    return facts if 0 <= age <= limit else None


def _write_cache(path: Path, facts: ClusterFacts, sinfo_format: str) -> None:
    """Best effort: a cache that cannot be written is only slower next time."""
    data = {"version": CACHE_VERSION, "sinfo_format": sinfo_format, "read_at": facts.read_at, "config": facts.config, "sinfo": facts.sinfo,
            "assoc": facts.assoc, "qos": facts.qos, "not_checked": facts.not_checked}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        pass


def _ask(runner: Runner, argv: list[str]) -> subprocess.CompletedProcess | str:
    """The program's answer, or why there is none (not found, timed out)."""
    try:
        return runner(argv, None)
    except FileNotFoundError:
        return f"{argv[0]} not found on PATH"
    except subprocess.TimeoutExpired as e:
        return f"{argv[0]} did not answer within {e.timeout:g} s"


def query(runner: Runner | None, sinfo_format: str, *, user: str | None,
          sacctmgr_timeout_s: float = SACCTMGR_TIMEOUT_S, clock: Callable[[], float] = time.time) -> ClusterFacts:
    """Ask the cluster now: the four queries side by side."""
    fast = runner or timed_runner(QUERY_TIMEOUT_S)
    slow = runner or timed_runner(sacctmgr_timeout_s)
    calls = {"scontrol": (fast, ["scontrol", "show", "config"]),
             "sinfo": (fast, ["sinfo", "-h", "-N", "-o", sinfo_format])}
    if user:
        calls["assoc"] = (slow, ["sacctmgr", "-nP", "show", "assoc", f"users={user}", ASSOC_FORMAT])
        calls["qos"] = (slow, ["sacctmgr", "-nP", "show", "qos", "format=Name,MaxSubmitPU"])
    from concurrent.futures import ThreadPoolExecutor  # here: a plan with cached facts loads none of it

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {k: pool.submit(_ask, r, argv) for k, (r, argv) in calls.items()}
        answers = {k: f.result() for k, f in futures.items()}
    for key, program in (("scontrol", "scontrol show config"), ("sinfo", "sinfo")):
        a = answers[key]
        if isinstance(a, str):
            raise SchedulerError(a, hint="run cruijff on a SLURM login node, or set `executor: local` in the manifest"
                                 if "not found" in a else "check that slurmctld answers: scontrol ping")
        if a.returncode != 0:
            raise SchedulerError(f"{program} failed: {_clean_stderr(a.stderr, program.split()[0])}",
                                 hint="check that slurmctld answers: scontrol ping")
    config = parse_scontrol_config(answers["scontrol"].stdout)
    limits: dict[str, int] = {}
    for key in ("MaxArraySize", "MaxJobCount"):
        if config.get(key, "").isdigit():
            limits[key] = int(config[key])
    timeout = _seconds(config.get("MessageTimeout", ""))
    if timeout:
        limits["MessageTimeout"] = timeout
    not_checked: list[str] = []
    assoc = qos = None
    if not user:
        not_checked.append("your submit limit was not checked: the user name is unknown")
    else:
        a, q = answers["assoc"], answers["qos"]
        if isinstance(a, str):
            not_checked.append(f"your submit limit was not checked: {a} (slurmdbd slow or unreachable)")
        elif a.returncode != 0:
            not_checked.append(f"your submit limit was not checked: sacctmgr failed: {_clean_stderr(a.stderr, 'sacctmgr')}")
        else:
            assoc = a.stdout
            qos = q.stdout if not isinstance(q, str) and q.returncode == 0 else ""
    return ClusterFacts(limits, answers["sinfo"].stdout, assoc, qos, clock(), False, not_checked)


def _user() -> str | None:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def cluster_facts(sinfo_format: str, *, runner: Runner | None = None, refresh: bool = False,
                  directory: Path | None = None, max_age_s: float = MAX_AGE_S,
                  sacctmgr_timeout_s: float = SACCTMGR_TIMEOUT_S, clock: Callable[[], float] = time.time,
                  use_cache: bool = True) -> ClusterFacts:
    """The cluster's facts: from the cache when fresh (and not `refresh`), else asked and cached."""
    path = cache_path(directory) if use_cache else None
    now = clock()
    if path is not None and not refresh:
        facts = _read_cache(path, now, max_age_s, sinfo_format)
        if facts is not None:
            return facts
    facts = query(runner, sinfo_format, user=_user(), sacctmgr_timeout_s=sacctmgr_timeout_s, clock=clock)
    if path is not None:
        _write_cache(path, facts, sinfo_format)
    return facts
