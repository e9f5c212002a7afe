"""SlurmExecutor against the real local SLURM (scripts/slurm_cluster.sh)."""

from __future__ import annotations

import shlex
import time
import uuid
from pathlib import Path

import pytest

from cruijff.run.executors.base import CANCELLED, COMPLETED, FAILED, JobInfo
from cruijff.run.executors.slurm import SlurmExecutor, cluster_limits, slurm_available
from cruijff.plan import Node, Plan, Resources

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

FINAL = (COMPLETED, FAILED, CANCELLED)


def make_plan(tmp_path: Path, scripts: dict[str, tuple[tuple[str, ...], str]]) -> Plan:
    """A plan whose nodes run the given bash bodies; scripts: node id -> (parents, body)."""
    experiment = f"it-{uuid.uuid4().hex[:8]}"  # fresh name: earlier runs' jobs never match
    nodes = []
    for node_id, (parents, body) in scripts.items():
        node = Node(node_id, "finetune", parents, Resources(), f"hash-{node_id.replace('/', '-')}")
        script = tmp_path / node.script
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(
            "#!/bin/bash\n#SBATCH --time=00:05:00\n#SBATCH --mem=100M\n"
            f"#SBATCH --output={tmp_path / node.dir}/slurm.out\nset -euo pipefail\n{body}\n"
        )
        nodes.append(node)
    return Plan(experiment, str(tmp_path), str(tmp_path / "manifest.yaml"), "slurm", 1, {}, tuple(nodes))


def submit_all(ex: SlurmExecutor, plan: Plan) -> dict[str, str]:
    ids: dict[str, str] = {}
    for node in plan.nodes:
        ids[node.id] = ex.submit(plan, node, [ids[p] for p in node.parents])
    return ids


def wait_until(ex: SlurmExecutor, plan: Plan, ids: dict[str, str], timeout: float = 60) -> dict[str, JobInfo]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = ex.jobs(plan)
        if all(j in jobs and jobs[j].state in FINAL for j in ids.values()):
            return jobs
        if time.monotonic() > deadline:
            pytest.fail(f"jobs not finished after {timeout}s: {jobs}")
        time.sleep(0.5)


def append(path: Path, word: str) -> str:
    return f"sleep 1\necho {word} >> {shlex.quote(str(path))}"


def test_slurm_is_available_and_limits_are_read():
    assert slurm_available()
    limits = cluster_limits()
    assert limits["MaxArraySize"] >= 2 and limits["MaxJobCount"] >= limits["MaxArraySize"] - 1


def test_chain_runs_in_order(tmp_path):
    log = tmp_path / "order.txt"
    plan = make_plan(
        tmp_path,
        {
            "finetune/a": ((), append(log, "a") + "\npwd > where.txt"),
            "eval/a/epoch_0/b": (("finetune/a",), append(log, "b")),
            "eval/a/epoch_0/c": (("eval/a/epoch_0/b",), append(log, "c")),
        },
    )
    ex = SlurmExecutor()
    t0 = time.perf_counter()
    ids = submit_all(ex, plan)
    per_submit = (time.perf_counter() - t0) / 3
    assert per_submit < 5, f"sbatch took {per_submit:.2f}s per call"
    assert len(set(ids.values())) == 3 and all(i.isdigit() for i in ids.values())

    jobs = wait_until(ex, plan, ids)
    assert log.read_text().split() == ["a", "b", "c"]
    for node_id, job_id in ids.items():
        info = jobs[job_id]
        assert info.state == COMPLETED and info.exit_code == 0
        assert info.node_id == node_id
        assert info.node_hash == plan.node(node_id).hash
        assert info.start is not None and info.end is not None and info.start <= info.end
    # Each child started only after its parent ended.
    a, b, c = (jobs[ids[n]] for n in ("finetune/a", "eval/a/epoch_0/b", "eval/a/epoch_0/c"))
    assert a.end <= b.start and b.end <= c.start
    # --chdir: the job ran in its node directory.
    assert (tmp_path / "finetune/a/where.txt").read_text().strip() == str(tmp_path / "finetune/a")


def test_failed_parent_cancels_its_child(tmp_path):
    log = tmp_path / "ran.txt"
    plan = make_plan(
        tmp_path,
        {
            "finetune/bad": ((), "exit 3"),
            "eval/bad/epoch_0/t": (("finetune/bad",), append(log, "child")),
            "eval/bad/epoch_0/u": (("eval/bad/epoch_0/t",), append(log, "grandchild")),
        },
    )
    ex = SlurmExecutor()
    ids = submit_all(ex, plan)
    jobs = wait_until(ex, plan, ids)
    parent = jobs[ids["finetune/bad"]]
    assert parent.state == FAILED and parent.exit_code == 3
    for node_id in ("eval/bad/epoch_0/t", "eval/bad/epoch_0/u"):
        child = jobs[ids[node_id]]
        assert child.state == CANCELLED, child
        assert child.reason in ("DependencyNeverSatisfied", "Dependency"), child
        assert child.node_id == node_id
    assert not log.exists()


def test_gpu_gres_is_accepted(tmp_path):
    out = tmp_path / "gpu.txt"
    plan = make_plan(
        tmp_path,
        {"finetune/gpu": ((), f'echo "${{CUDA_VISIBLE_DEVICES:-none}}" > {shlex.quote(str(out))}')},
    )
    script = tmp_path / plan.nodes[0].script
    script.write_text(script.read_text().replace("#SBATCH --mem=100M\n", "#SBATCH --mem=100M\n#SBATCH --gres=gpu:1\n"))
    ex = SlurmExecutor()
    ids = submit_all(ex, plan)
    jobs = wait_until(ex, plan, ids)
    assert jobs[ids["finetune/gpu"]].state == COMPLETED
    assert out.read_text().strip() != "none"  # SLURM bound one (fake) GPU


def test_cancel_a_running_job_and_its_dependent(tmp_path):
    plan = make_plan(
        tmp_path,
        {"finetune/long": ((), "sleep 120"), "eval/long/epoch_0/t": (("finetune/long",), "true")},
    )
    ex = SlurmExecutor()
    ids = submit_all(ex, plan)
    ex.cancel(list(ids.values()) + ["999999"])  # unknown ids are ignored
    jobs = wait_until(ex, plan, ids, timeout=30)
    assert {jobs[i].state for i in ids.values()} == {CANCELLED}


def test_sacct_shows_finished_jobs(tmp_path):
    plan = make_plan(tmp_path, {"finetune/ok": ((), "true"), "finetune/bad": ((), "exit 4")})
    ex = SlurmExecutor()
    ids = submit_all(ex, plan)
    wait_until(ex, plan, ids)
    deadline = time.monotonic() + 30  # slurmdbd records job ends asynchronously
    while True:
        finished = ex.finished_jobs(plan)
        if set(ids.values()) <= set(finished):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"sacct does not list {ids}: {finished}")
        time.sleep(0.5)
    ok, bad = finished[ids["finetune/ok"]], finished[ids["finetune/bad"]]
    assert (ok.state, ok.exit_code, ok.node_id, ok.node_hash) == (COMPLETED, 0, "finetune/ok", "hash-finetune-ok")
    assert (bad.state, bad.exit_code, bad.node_id) == (FAILED, 4, "finetune/bad")
    assert ok.start is not None and ok.end is not None
