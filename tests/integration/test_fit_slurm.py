"""`cruijff plan` against the real local SLURM says when no node can run a job (issue 14.2).

The local cluster has one node (16 CPUs, 16000M, gpu:4): a 70B fine-tune asking for 320G cannot
run there, a small job can.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from cruijff.run.executors.slurm import default_runner, sinfo_nodes
from cruijff.compiler.capacity import SINFO_NODE_FORMAT, parse_sinfo_nodes
from tests.integration.test_apply_slurm import cli

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

MANIFEST = """\
experiment: fit-{name}
output_dir: out
executor: {{kind: slurm}}
models:
  m: {{path: /models/m, family: {family}}}
datasets:
  d: {{path: d.json, format: instruct_json}}
finetune:
  resources: {resources}
"""


def plan_json(tmp_path, name: str, family: str, resources: str) -> dict:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(MANIFEST.format(name=name, family=family, resources=resources))
    proc = cli("plan", str(manifest), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_sinfo_is_read_from_the_real_cluster():
    nodes = parse_sinfo_nodes(sinfo_nodes(default_runner, SINFO_NODE_FORMAT))
    expected = subprocess.run(["sinfo", "-h", "-N", "-o", "%c"], capture_output=True, text=True).stdout.split()
    assert nodes and [str(n.cpus) for n in nodes] == expected


def test_a_70b_finetune_that_no_node_can_hold_is_named_at_plan_time(tmp_path):
    data = plan_json(tmp_path, "big", "Llama-3.3-70B-Instruct", "{}")
    (problem,) = [w for w in data["warnings"] if "no node" in w["message"]]
    assert "1 finetune job of model m asks for 4 GPUs, 16 CPUs, 320G memory" in problem["message"]
    assert problem["severity"] == "warning"


def test_a_job_that_fits_is_not_warned_about(tmp_path):
    data = plan_json(tmp_path, "small", "Llama-3.2-1B-Instruct", "{gpus: 1, cpus: 2, mem: 1G, time: '00:10:00'}")
    assert "slurm" in data and "error" not in data["slurm"]
    assert not [w for w in data["warnings"] if "no node" in w["message"]]


def test_the_cluster_facts_plan_caches_match_the_real_cluster(tmp_path, monkeypatch):
    """Issue 27.1 against the local SLURM: the four queries side by side give the same limits and
    nodes as the executor reads one by one; the second read is the cache; a plan says so."""
    from cruijff.run.executors.slurm import SlurmExecutor
    from cruijff.run.executors.slurm.facts import cluster_facts

    monkeypatch.setenv("CRUIJFF_CACHE_DIR", str(tmp_path / "cache"))
    facts = cluster_facts(SINFO_NODE_FORMAT)
    assert not facts.cached and facts.not_checked == []
    assert facts.limits() == SlurmExecutor().limits()
    assert parse_sinfo_nodes(facts.sinfo) == parse_sinfo_nodes(sinfo_nodes(default_runner, SINFO_NODE_FORMAT))
    again = cluster_facts(SINFO_NODE_FORMAT)
    assert again.cached and again.limits() == facts.limits() and again.sinfo == facts.sinfo
    data = plan_json(tmp_path, "cached", "Llama-3.2-1B-Instruct", "{gpus: 1, cpus: 2, mem: 1G, time: '00:10:00'}")
    assert data["slurm"]["cluster_facts"]["cached"] is True
    assert data["slurm"]["limits"]["MaxArraySize"] == facts.limits()["MaxArraySize"]
