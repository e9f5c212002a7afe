"""Plan-time SLURM layout and fit messages (cruijff/compiler/capacity.py)."""

from __future__ import annotations

from pathlib import Path

from cruijff.compiler.capacity import fit_problems, submission_layout
from tests.helpers_plans import make_plan


def scripts_of(plan) -> dict[str, str]:
    return {n.script: (Path(plan.output_dir) / n.script).read_text() for n in plan.nodes}


def test_layout_counts_sbatch_calls_independent_of_runs(tmp_path):
    small = make_plan(tmp_path / "a", runs=10, evals_per_run=4, base_evals=0)
    big = make_plan(tmp_path / "b", runs=300, evals_per_run=4, base_evals=0)
    for plan in (small, big):
        layout = submission_layout(plan, scripts_of(plan), 1001)
        assert layout["submissions"] == layout["arrays"] == 5 and layout["plain_jobs"] == 0
    assert submission_layout(big, scripts_of(big), 1001)["jobs"] == 1500


def test_layout_without_arrays_is_one_call_per_job(tmp_path):
    plan = make_plan(tmp_path, runs=3, evals_per_run=2, base_evals=1)
    layout = submission_layout(plan, scripts_of(plan), 0)
    assert layout["submissions"] == layout["plain_jobs"] == len(plan.nodes) and layout["arrays"] == 0


def test_layout_splits_by_max_array_size(tmp_path):
    plan = make_plan(tmp_path, runs=7, evals_per_run=1, base_evals=0)
    layout = submission_layout(plan, scripts_of(plan), 3)
    assert (layout["arrays"], layout["plain_jobs"]) == (4, 2)  # 3+3+1 fine-tunes, evals alike


def test_fit_problems_name_the_limit_and_its_source():
    problems = fit_problems(5000, {"submit_limit": (1000, "MaxSubmitJobs of your association with account lab"),
                                   "MaxJobCount": 10000})
    assert len(problems) == 1
    text = str(problems[0])
    assert "5,000 jobs" in text and "at most 1,000" in text and "MaxSubmitJobs" in text and "--only" in text
    assert "--only model:NAME" in text  # the selector syntax; model=NAME selects nothing
    assert problems[0].severity == "warning"


def test_fit_problems_max_job_count_and_nothing_when_it_fits():
    assert "MaxJobCount" in str(fit_problems(30000, {"MaxJobCount": 20000})[0])
    assert fit_problems(100, {"submit_limit": (100, "x"), "MaxJobCount": 100}) == []
    assert fit_problems(100, {}) == []


# --- can any node run each job? -----------------------------------------------------------------

from cruijff.compiler.capacity import mem_to_mb, parse_sinfo_nodes, resource_problems  # noqa: E402
from cruijff.plan import Node, Plan, Resources  # noqa: E402

SINFO = """\
gpu|64|512000|gpu:a100:4(S:0-1)|1-00:00:00|a100,gpu80
gpu|48|256000|gpu:4|1-00:00:00|v100
cpu|32|128000|(null)|infinite|(null)
"""


def plan_of(*resources: Resources, kind: str = "finetune", cluster=None) -> Plan:
    nodes = tuple(Node(f"{kind}/r{i}", kind, (), r, "h", attrs={"model": "big"}) for i, r in enumerate(resources))
    return Plan(experiment="e", output_dir="/o", manifest="m.yaml", nodes=nodes, executor="slurm", max_parallel=1,
                cluster=cluster or {})


def test_sinfo_nodes_are_parsed():
    nodes = parse_sinfo_nodes(SINFO + "garbage line\n")
    assert [(n.partition, n.cpus, n.mem_mb, n.gpus, n.max_hours) for n in nodes] == [
        ("gpu", 64, 512000, 4, 24.0), ("gpu", 48, 256000, 4, 24.0), ("cpu", 32, 128000, 0, None)]
    assert nodes[0].features == {"a100", "gpu80"} and nodes[2].features == set()
    assert parse_sinfo_nodes("g|8|1000|gpu:a:2,gpu:b:2|4:00:00|x")[0].gpus == 4
    assert mem_to_mb("64G") == 65536 and mem_to_mb("500M") == 500 and mem_to_mb("1T") == 1048576
    assert mem_to_mb("2000") == 2000 and mem_to_mb(None) == 0


def test_the_old_70b_request_fits_no_4_gpu_node():
    nodes = parse_sinfo_nodes(SINFO)
    old = Resources(gpus=8, cpus=32, mem="512G", time="24:00:00")
    (problem,) = resource_problems(plan_of(old, old), nodes)
    text = str(problem)
    assert "2 finetune jobs of model big ask for 8 GPUs, 32 CPUs, 512G memory" in text
    assert "no node in the cluster" in text and "largest node there has 4 GPUs" in text
    assert problem.severity == "warning"
    assert resource_problems(plan_of(Resources(gpus=4, cpus=16, mem="320G", time="24:00:00")), nodes) == []


def test_partition_constraint_and_time_limit_narrow_the_nodes():
    nodes = parse_sinfo_nodes(SINFO)
    job = Resources(gpus=4, cpus=16, mem="300G", time="04:00:00")
    assert resource_problems(plan_of(job, cluster={"partition": "gpu"}), nodes) == []
    assert "partition cpu" in str(resource_problems(plan_of(job, cluster={"partition": "cpu"}), nodes)[0])
    # v100 nodes have 250G: the constraint leaves only them
    assert resource_problems(plan_of(job, cluster={"constraint": "v100"}), nodes)
    assert resource_problems(plan_of(job, cluster={"constraint": "v100|a100"}), nodes) == []
    long = Resources(gpus=1, cpus=1, mem="1G", time="2-00:00:00")
    assert "24 h time limit" in str(resource_problems(plan_of(long, cluster={"partition": "gpu"}), nodes)[0])
    assert "1 finetune job of model big asks for" in str(resource_problems(plan_of(long), nodes)[0])  # GPU: 24 h
    assert resource_problems(plan_of(Resources(gpus=0, cpus=1, time="2-00:00:00")), nodes) == []  # cpu: no limit
    assert resource_problems(plan_of(long), []) == []  # nothing known: nothing said


def test_a_partition_the_cluster_lacks_is_one_warning_that_says_so():
    """Not one near-identical warning per kind of job, none naming the cause (issue 23, item 9)."""
    nodes = parse_sinfo_nodes(SINFO)
    jobs = [Resources(gpus=1, cpus=4, mem="32G", time="01:00:00"), Resources(gpus=0, cpus=1, mem="8G", time="01:00:00")]
    plan = plan_of(*jobs, cluster={"partition": "gpu-long"})
    (problem,) = resource_problems(plan, nodes)
    assert "partition gpu-long does not exist on this cluster (it has: cpu, gpu)" in problem.message
    assert problem.severity == "warning" and "cluster.partition" in problem.hint
    (problem,) = resource_problems(plan_of(*jobs, cluster={"constraint": "h100"}), nodes)
    assert "no node in the cluster with constraint h100 exists (node features there: a100, gpu80, v100)" in problem.message
