"""Fixtures for tests against real components (the local single-node SLURM, ...)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import REPO, require

CLUSTER_SCRIPT = REPO / "scripts" / "slurm_cluster.sh"


def _node_ready() -> bool:
    """sinfo answers and the node can take jobs."""
    if shutil.which("sinfo") is None:
        return False
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    states = proc.stdout.split()
    return proc.returncode == 0 and any(s.rstrip("*~#") in ("idle", "mix", "alloc") for s in states)


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The local SLURM (scripts/slurm_cluster.sh): started when it is not up; fails in CI if it can't."""
    if _node_ready():
        return
    require(shutil.which("slurmctld") is not None, "SLURM is not installed: scripts/slurm_cluster.sh install")
    require(os.geteuid() == 0, "the local SLURM is started as root: sudo scripts/slurm_cluster.sh start")
    proc = subprocess.run(
        ["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True, text=True, timeout=300
    )
    require(
        proc.returncode == 0 and _node_ready(),
        f"scripts/slurm_cluster.sh start failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}",
    )
