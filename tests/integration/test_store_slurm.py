"""The results store through the real SLURM, torchtune and inspect (issue 26's done-when test).

Two experiments on the tiny model share two of their four runs (lr 1e-3 at ranks 4 and 8) and
the base-model evaluation; the second plans elsewhere, under another experiment name, with its own
copy of the dataset. The second `plan` marks the shared fine-tunes, their evaluations and the base
evaluation reused and explains each miss; its `apply` submits only the two new fine-tunes and their
evaluations (counted in SLURM's own queue and accounting); its scores for the shared cells equal
the first experiment's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.conftest import REPO
from tests.integration.test_apply_slurm import scheduler_jobs

pytestmark = [pytest.mark.train, pytest.mark.inspect, pytest.mark.slurm]


def cli(*args: str, store: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "CRUIJFF_STORE": str(store),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "cruijff", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)
    if check:
        assert proc.returncode == 0, f"cruijff {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def experiment(folder: Path, model_dir: Path, data: Path, name: str, lrs: list[float]) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(data, folder / "words.json")  # its own copy: the key covers the bytes, not the path
    yaml = YAML()
    m = yaml.load((REPO / "experiments" / "tiny.yaml").read_text())
    m["experiment"] = name
    m["output_dir"] = str(folder / "out")
    m["executor"] = {"kind": "slurm", "max_parallel": 2}
    m["models"]["tiny"]["path"] = str(model_dir)
    m["datasets"]["words"] = {"path": str(folder / "words.json"), "format": "instruct_json"}
    m["finetune"]["hyperparameters"]["epochs"] = 1
    m["finetune"]["save_epochs"] = "all"
    m["grid"] = {"lr": lrs, "lora_rank": [4, 8]}
    m["eval"]["tasks"][0]["file"] = str(REPO / "experiments" / "tasks" / "capitalization.py")
    m["eval"]["limit"] = 6
    path = folder / "m.yaml"
    with path.open("w") as f:
        yaml.dump(m, f)
    return path


def settle(out: Path, store: Path) -> dict:
    import time

    deadline = time.time() + 900
    while True:
        status = json.loads(cli("status", str(out), "--json", store=store, check=False).stdout)
        if not {"pending", "running"} & set(status["counts"]):
            return status
        assert time.time() < deadline, status["counts"]
        time.sleep(2)


@pytest.mark.slow  # ~13 real jobs; the same reuse through apply with stand-in jobs: tests/unit/test_store.py::test_apply_materialises_what_the_store_holds_and_submits_only_the_rest
def test_second_experiment_runs_only_what_the_first_did_not(tmp_path, tiny_model_dir, slurm_cluster):
    store = tmp_path / "store"
    data = tmp_path / "words.json"
    subprocess.run([sys.executable, "-m", "cruijff", "data", "generate", "capitalization", str(data), "--count", "60",
                    "--letters", "5", "--seed", "3"], check=True, cwd=REPO, capture_output=True)
    first, second = f"s1-{uuid.uuid4().hex[:6]}", f"s2-{uuid.uuid4().hex[:6]}"
    m1 = experiment(tmp_path / "one", tiny_model_dir, data, first, [1.0e-3, 5.0e-4])
    m2 = experiment(tmp_path / "two", tiny_model_dir, data, second, [1.0e-3, 2.0e-3])

    cli("apply", str(m1), store=store)
    status1 = settle(tmp_path / "one" / "out", store)  # status publishes what is done
    assert set(status1["counts"]) == {"done"} and len(status1["nodes"]) == 9
    listed = json.loads(cli("store", "ls", "--json", store=store).stdout)
    assert len(listed["entries"]) == 9 and {e["experiment"] for e in listed["entries"]} == {first}

    plan = json.loads(cli("plan", str(m2), "--json", store=store).stdout)
    found = plan["store"]
    shared = {n["id"] for n in status1["nodes"] if "lr1e-3" in n["id"] or n["kind"] == "base_eval"}
    assert set(found["reused"]) == shared and len(shared) == 5
    assert {s["experiment"] for s in found["reused"].values()} == {first}
    new = {i for i in found["nodes"] if i not in shared}
    assert len(new) == 4 and set(found["misses"]) == new  # every miss explained
    for node_id in new:
        text = found["misses"][node_id]["text"]
        if node_id.startswith("finetune/"):
            assert "optimizer.lr 0.002 here" in text and f"from experiment {first}" in text, text
        else:
            assert "its fine-tune" in text, text
    saved = found["estimated_gpu_hours_saved"]
    print(f"\nGPU-hours saved by the second experiment (plan's estimate): {saved}; "
          f"asked for: {found['gpu_hours_saved']}")

    applied = json.loads(cli("apply", str(tmp_path / "two" / "out"), "--json", store=store).stdout)
    assert sorted(n["node"] for n in applied["submitted"]) == sorted(new)
    assert sorted(r["node"] for r in applied["reused"]) == sorted(shared)
    status2 = settle(tmp_path / "two" / "out", store)
    assert set(status2["counts"]) == {"done"} and status2["store"]["reused"] == 5
    # SLURM's own queue and accounting: only the four new jobs of the second experiment
    jobs = scheduler_jobs(second)
    assert len(jobs) == 4, jobs
    assert len(scheduler_jobs(first)) == 9
    scores1 = {n["id"]: n["score"] for n in status1["nodes"] if n["score"]}
    scores2 = {n["id"]: n["score"] for n in status2["nodes"] if n["score"]}
    for node_id in shared - {i for i in shared if i.startswith("finetune/")}:
        assert scores2[node_id] == scores1[node_id], node_id
    # report lists the reused nodes
    cli("report", str(tmp_path / "two" / "out"), store=store)
    assert (tmp_path / "two" / "out" / "report" / "reused.csv").read_text().count("\n") == 6
