"""What `cruijff plan` asks SLURM, cached per cluster (cruijff/run/executors/slurm/facts.py; issue 27.1).

Fake runners count and time the calls; tests/integration/test_fit_slurm.py reads the real local SLURM.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest

from cruijff.compiler.capacity import SINFO_NODE_FORMAT, parse_sinfo_nodes
from cruijff.errors import SchedulerError
from cruijff.run.executors.slurm import facts as facts_module
from cruijff.run.executors.slurm.facts import NOT_CHECKED_MAX_AGE_S, cache_path, cluster_facts

CONFIG = "Configuration data as of 2026-11-25T16:36:21\nMaxArraySize            = 77\nMaxJobCount             = 900\n"
SINFO = "gpu|16|64000|gpu:4|2-00:00:00|a100\n"
ASSOC = "proj||500||normal|normal\n"
QOS = "normal|8\n"


class Fake:
    """Answers scontrol/sinfo/sacctmgr after `delay` seconds; sacctmgr may hang (TimeoutExpired)."""

    def __init__(self, delay: float = 0.0, sacctmgr: str = "ok"):
        self.delay, self.sacctmgr = delay, sacctmgr
        self.calls: list[list[str]] = []
        self.active = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, argv, env=None):
        with self.lock:
            self.calls.append(list(argv))
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(self.delay)
            if argv[0] == "sacctmgr" and self.sacctmgr == "hang":
                raise subprocess.TimeoutExpired(argv, 3)
            if argv[0] == "sacctmgr" and self.sacctmgr == "fail":
                return subprocess.CompletedProcess(argv, 1, "", "sacctmgr: error: Problem talking to the database")
            out = {"scontrol": CONFIG, "sinfo": SINFO}.get(argv[0]) or (ASSOC if "assoc" in argv else QOS)
            return subprocess.CompletedProcess(argv, 0, out, "")
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture
def conf(tmp_path, monkeypatch):
    """A slurm.conf of our own, so that the cache key is this test's."""
    path = tmp_path / "slurm.conf"
    path.write_text("ClusterName=testcluster\nMaxArraySize=77\n")
    monkeypatch.setenv("SLURM_CONF", str(path))
    monkeypatch.setenv("CRUIJFF_CACHE_DIR", str(tmp_path / "cache"))
    return path


def test_the_four_queries_run_side_by_side_and_give_the_limits(conf):
    fake = Fake(delay=0.3)
    t0 = time.monotonic()
    facts = cluster_facts(SINFO_NODE_FORMAT, runner=fake)
    took = time.monotonic() - t0
    assert sorted(c[0] for c in fake.calls) == ["sacctmgr", "sacctmgr", "scontrol", "sinfo"]
    assert fake.most == 4 and took < 0.9  # one after another would be 1.2 s
    assert facts.limits() == {"MaxArraySize": 77, "MaxJobCount": 900,
                              "submit_limit": (8, "MaxSubmitJobsPerUser of QOS normal")}
    assert parse_sinfo_nodes(facts.sinfo)[0].gpus == 4
    assert not facts.cached and facts.not_checked == []


def test_a_second_plan_reads_the_cache_and_asks_nothing(conf):
    cluster_facts(SINFO_NODE_FORMAT, runner=Fake())
    fake = Fake()
    facts = cluster_facts(SINFO_NODE_FORMAT, runner=fake)
    assert fake.calls == [] and facts.cached
    assert facts.limits()["submit_limit"][0] == 8 and facts.limits()["MaxArraySize"] == 77
    assert json.loads(cache_path().read_text())["config"]["MaxJobCount"] == 900
    assert cache_path().name.startswith("cluster-testcluster-")


def test_refresh_and_age_and_a_changed_slurm_conf_ask_again(conf):
    now = [1000.0]
    cluster_facts(SINFO_NODE_FORMAT, runner=Fake(), clock=lambda: now[0])
    fake = Fake()
    cluster_facts(SINFO_NODE_FORMAT, runner=fake, refresh=True, clock=lambda: now[0])
    assert len(fake.calls) == 4
    now[0] += facts_module.MAX_AGE_S - 1
    fake = Fake()
    assert cluster_facts(SINFO_NODE_FORMAT, runner=fake, clock=lambda: now[0]).cached and fake.calls == []
    now[0] += 2  # past the age
    assert not cluster_facts(SINFO_NODE_FORMAT, runner=fake, clock=lambda: now[0]).cached
    assert len(fake.calls) == 4
    conf.write_text("ClusterName=testcluster\nMaxArraySize=3\n")  # the admins changed the config
    fake = Fake()
    assert not cluster_facts(SINFO_NODE_FORMAT, runner=fake, clock=lambda: now[0]).cached and len(fake.calls) == 4


@pytest.mark.parametrize("how", ["hang", "fail"])
def test_a_slow_or_failing_sacctmgr_is_a_not_checked_line_and_asked_again_sooner(conf, how):
    now = [1000.0]
    facts = cluster_facts(SINFO_NODE_FORMAT, runner=Fake(sacctmgr=how), clock=lambda: now[0])
    assert "submit_limit" not in facts.limits() and facts.limits()["MaxJobCount"] == 900
    (line,) = facts.not_checked
    assert line.startswith("your submit limit was not checked: ")
    assert ("did not answer within 3 s" in line) if how == "hang" else ("database" in line)
    now[0] += NOT_CHECKED_MAX_AGE_S + 1
    fake = Fake()
    again = cluster_facts(SINFO_NODE_FORMAT, runner=fake, clock=lambda: now[0])
    assert len(fake.calls) == 4 and again.limits()["submit_limit"][0] == 8 and again.not_checked == []


def test_the_sacctmgr_timeout_bounds_the_wait_with_the_real_runner(conf, tmp_path, monkeypatch):
    """A sacctmgr that hangs for 30 s costs the timeout, not 30 s (a fake program on PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("scontrol", f"printf '{CONFIG}'"), ("sinfo", f"printf '{SINFO}'"), ("sacctmgr", "sleep 30")):
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    t0 = time.monotonic()
    facts = cluster_facts(SINFO_NODE_FORMAT, sacctmgr_timeout_s=0.5)
    assert time.monotonic() - t0 < 5
    assert facts.limits() == {"MaxArraySize": 77, "MaxJobCount": 900}
    assert "did not answer within 0.5 s" in facts.not_checked[0]


def test_scontrol_failing_is_an_error_and_nothing_is_cached(conf):
    def broken(argv, env=None):
        if argv[0] == "scontrol":
            return subprocess.CompletedProcess(argv, 1, "", "scontrol: error: Unable to contact slurm controller")
        return Fake()(argv, env)

    with pytest.raises(SchedulerError, match="Unable to contact slurm controller"):
        cluster_facts(SINFO_NODE_FORMAT, runner=broken)
    assert not cache_path().exists()

