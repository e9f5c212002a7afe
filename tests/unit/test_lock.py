"""The plan directory's lock (issue 17 item 5): plan, apply and cancel share it; the loser is told
who holds it (pid, command, since when), exits non-zero and writes nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cruijff.errors import StateError
from cruijff.lock import holder, plan_lock
from tests.unit.test_write import manifest, tree

REPO = Path(__file__).resolve().parents[2]
HOLD = """
import sys, time
from cruijff.lock import plan_lock
with plan_lock(sys.argv[1], "apply"):
    print("locked", flush=True)
    time.sleep(120)
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120)


@pytest.fixture
def held(tmp_path):
    """Another process holding the lock of tmp_path/out, as a running apply does."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), "apply", "exp.yaml"], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    yield out, proc
    proc.kill()
    proc.wait()


def test_plan_and_apply_wait_for_no_one_and_name_the_holder(tmp_path, held):
    out, proc = held
    path = manifest(tmp_path)
    before = tree(out)
    for args in (["plan", str(path)], ["apply", str(path), "--executor", "local"]):
        result = cli(*args, cwd=tmp_path)
        assert result.returncode == 1, result
        assert f"(pid {proc.pid}, since " in result.stderr and "apply exp.yaml" in result.stderr
        assert "Traceback" not in result.stderr
        assert tree(out) == before and not (out / "plan.json").exists()  # nothing written
        assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name != ".cruijff.lock"]
    who = holder(out)
    assert who["pid"] == proc.pid and who["what"] == "apply"


def test_lock_is_free_after_the_holder_dies_and_holder_says_none(tmp_path, held):
    out, proc = held
    assert holder(out) is not None
    proc.kill()
    proc.wait()
    assert holder(out) is None
    with plan_lock(out, "plan") as me:
        assert me["pid"] == os.getpid()
        with pytest.raises(StateError, match=rf"`cruijff .*` \(pid {os.getpid()}, since"):
            with plan_lock(out, "cancel"):
                pass


def test_a_status_probe_never_makes_an_apply_lose(tmp_path):
    """holder() takes the lock shared for an instant; a plan_lock waiting then still wins."""
    stop = time.monotonic() + 1.0

    def probe() -> int:
        n = 0
        while time.monotonic() < stop:
            holder(tmp_path)
            n += 1
        return n

    with ThreadPoolExecutor(1) as pool:
        probes = pool.submit(probe)
        for _ in range(20):
            with plan_lock(tmp_path, "apply"):
                pass
        assert probes.result() > 0


def test_two_applies_of_one_manifest_at_once_the_loser_gets_the_lock_message(tmp_path):
    """Never "cannot write the plan": each round one wins, the other wins later or is told why."""
    path = manifest(tmp_path)
    for round_ in range(4):
        out = tmp_path / f"out{round_}"
        args = ["apply", str(path), "--dry-run", "--executor", "local"]
        path.write_text(re.sub(r"(?m)^output_dir: .*$", f"output_dir: {out.name}", path.read_text()))
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: cli(*args, cwd=tmp_path), range(2)))
        for r in results:
            assert r.returncode == 0 or "is running on this plan directory" in r.stderr, r.stderr
            assert "cannot write the plan" not in r.stderr
        assert any(r.returncode == 0 for r in results)
        assert (out / "plan.json").exists()
