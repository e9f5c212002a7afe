"""SlurmExecutor's job arrays and limits against Slurm 22.05-shaped output (FakeRunner, no cluster)."""

from __future__ import annotations

import json

import pytest

from cruijff.errors import SchedulerError
from cruijff.run.executors import slurm
from cruijff.run.executors.base import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, ArraySubmission
from cruijff.run.executors.slurm import (
    SACCT_DELIMITER,
    SACCT_FIELDS,
    SlurmExecutor,
    compact_job_ids,
    parse_sacct_text,
    parse_squeue_json,
    queue_counts,
    submit_limit,
)
from tests.unit.test_executor_slurm import FakeRunner, Sleeps, fixture, make_plan

ARRAY = ArraySubmission(name="array/eval/abc123", digest="abc123", script="/out/demo/arrays/eval-abc123.sbatch",
                        tasks=(0, 1, 2, 3, 4))


@pytest.fixture
def as_root(monkeypatch):
    monkeypatch.setattr(slurm.os, "getuid", lambda: 0)  # the squeue records below belong to uid 0


def job(job_id: int, name: str, state: str, **fields) -> dict:
    """One squeue --json record, as 22.05 prints it (the fixture's full record, some fields set)."""
    base = json.loads(fixture("squeue_pending.json"))["jobs"][0]
    return {**base, "job_id": job_id, "name": name, "job_state": state, "comment": "",
            "array_job_id": 0, "array_task_id": None, "array_task_string": "", "array_max_tasks": 0, **fields}


def squeue(*jobs: dict) -> str:
    data = json.loads(fixture("squeue_pending.json"))
    data["jobs"] = list(jobs)
    return json.dumps(data)


# A pending array 40 (tasks 2-5, at most 2 at once) whose tasks 0 and 1 run; a plain job; another user's.
ARRAY_QUEUE = squeue(
    job(40, "demo:array/eval/abc123", "PENDING", array_job_id=40, array_task_string="2-5%2", array_max_tasks=2,
        comment="abc123", state_reason="JobArrayTaskLimit"),
    job(41, "demo:array/eval/abc123", "RUNNING", array_job_id=40, array_task_id=0, array_max_tasks=2,
        comment="abc123"),
    job(42, "demo:array/eval/abc123", "RUNNING", array_job_id=40, array_task_id=1, array_max_tasks=2,
        comment="abc123"),
    job(17, "demo:finetune/a", "PENDING", comment="hash-a"),
    job(90, "theirs:finetune/x", "PENDING", user_id=1000, array_job_id=90, array_task_string="0-9"),
)


# --- the sbatch command line ------------------------------------------------------------------


def test_array_argv(tmp_path):
    plan, _ = make_plan(tmp_path)
    spec = ArraySubmission(name="array/eval/abc123", digest="abc123", script="/out/arrays/eval-abc123.sbatch",
                           tasks=(0, 1, 2, 3, 4), after_ok=("1", "2"), after_corr="3", throttle=2)
    assert SlurmExecutor.array_argv(plan, spec) == [
        "sbatch",
        "--parsable",
        "--job-name=demo:array/eval/abc123",
        "--comment=abc123",
        "--array=0-4%2",
        f"--chdir={tmp_path}",
        "--dependency=afterok:1:2,aftercorr:3",
        "--kill-on-invalid-dep=yes",
        "/out/arrays/eval-abc123.sbatch",
    ]


def test_array_argv_without_dependencies_or_throttle_and_sparse_tasks(tmp_path):
    plan, _ = make_plan(tmp_path)
    spec = ArraySubmission(name="array/finetune/d", digest="d", script="/s", tasks=(3, 4, 9))
    argv = SlurmExecutor.array_argv(plan, spec)
    assert "--array=3-4,9" in argv
    assert not any(a.startswith("--dependency") for a in argv)
    assert argv[-2:] == ["--kill-on-invalid-dep=yes", "/s"]


@pytest.mark.parametrize("printed", ["555\n", "555;cruijff\n"])
def test_submit_array_returns_the_array_job_id(tmp_path, printed):
    plan, _ = make_plan(tmp_path)
    runner = FakeRunner(sbatch=[(0, printed, "")])
    ex = SlurmExecutor(runner)
    assert ex.submit_array(plan, ARRAY) == "555"
    (argv,) = runner.argvs("sbatch")
    assert "--array=0-4" in argv and ex.sbatch_calls == 1


def test_submit_array_refused_names_the_array(tmp_path):
    plan, _ = make_plan(tmp_path)
    refused = (1, "", "sbatch: error: Batch job submission failed: Invalid job array specification\n")
    runner = FakeRunner(sbatch=[refused], squeue=[(0, '{"jobs": []}', "")])
    with pytest.raises(SchedulerError, match=r"refused job array array/eval/abc123 \(5 tasks\): .*Invalid job array"):
        SlurmExecutor(runner).submit_array(plan, ARRAY)


def test_timed_out_array_sbatch_that_did_queue_the_array_is_not_submitted_twice(tmp_path):
    plan, _ = make_plan(tmp_path)
    queued = squeue(job(40, "demo:array/eval/abc123", "PENDING", array_job_id=40, array_task_string="0-4",
                        comment="abc123", submit_time=1000))
    timeout = (1, "", "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n")
    runner = FakeRunner(sbatch=[timeout], squeue=[(0, queued, "")])
    assert SlurmExecutor(runner, sleep=Sleeps(), clock=lambda: 1000.0, settle_s=20).submit_array(plan, ARRAY) == "40"
    assert len(runner.argvs("sbatch")) == 1


# --- submit rate -------------------------------------------------------------------------------


class Clock:
    """monotonic() and sleep() of a fake clock: sleeping moves it on."""

    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def rated(runner, clock: Clock, rate: float | None = 2) -> SlurmExecutor:
    return SlurmExecutor(runner, sleep=clock.sleep, monotonic=clock.monotonic, submit_rate=rate)


def test_submit_rate_spaces_sbatch_calls_but_not_the_first(tmp_path):
    plan, nodes = make_plan(tmp_path)
    clock = Clock()
    ex = rated(FakeRunner(sbatch=[(0, "1\n", "")]), clock, rate=2)
    ex.submit_array(plan, ARRAY)
    assert clock.sleeps == []
    ex.submit_array(plan, ARRAY)
    ex.submit(plan, nodes["finetune/run a"], [])  # plain jobs share the limit
    assert clock.sleeps == [0.5, 0.5]


def test_submit_rate_sleeps_only_what_is_left_of_the_interval(tmp_path):
    plan, _ = make_plan(tmp_path)
    clock = Clock()
    ex = rated(FakeRunner(sbatch=[(0, "1\n", "")]), clock, rate=2)
    ex.submit_array(plan, ARRAY)
    clock.now += 0.2
    ex.submit_array(plan, ARRAY)
    clock.now += 5
    ex.submit_array(plan, ARRAY)
    assert clock.sleeps == [pytest.approx(0.3)]


def test_no_submit_rate_never_sleeps(tmp_path):
    plan, _ = make_plan(tmp_path)
    clock = Clock()
    ex = rated(FakeRunner(sbatch=[(0, "1\n", "")]), clock, rate=None)
    for _ in range(3):
        ex.submit_array(plan, ARRAY)
    assert clock.sleeps == []


def test_for_plan_reads_the_cluster_block():
    ex = SlurmExecutor.for_plan({"arrays": False, "submit_rate": 4, "account": "proj", "qos": "long"})
    assert (ex.arrays, ex.min_interval, ex.account, ex.qos) == (False, 0.25, "proj", "long")
    assert SlurmExecutor.for_plan({"submit_rate": 0}).min_interval == 0
    assert SlurmExecutor.for_plan({}).arrays is True


# --- limits ------------------------------------------------------------------------------------

CONFIG = ("Configuration data as of 2026-11-25T16:36:21\n"
          "MaxArraySize            = {size}\n"
          "MaxJobCount             = {count}\n")
ASSOC = "proj||500||long,normal|normal\nother||100|||normal\n"
QOS = "normal|8\nlong|50\nhigh|\n"


def test_submit_limit_is_the_smallest_of_association_and_qos_limits():
    assert submit_limit(ASSOC, QOS) == (8, "MaxSubmitJobsPerUser of QOS normal")
    assert submit_limit(ASSOC, "") == (100, "MaxSubmitJobs of your association with account other")


def test_submit_limit_respects_account_and_qos():
    assert submit_limit(ASSOC, "", account="proj") == (500, "MaxSubmitJobs of your association with account proj")
    assert submit_limit(ASSOC, QOS, account="proj", qos="long") == (50, "MaxSubmitJobsPerUser of QOS long")
    assert submit_limit(ASSOC, QOS, qos="high") == (100, "MaxSubmitJobs of your association with account other")


def test_submit_limit_counts_grp_submit():
    assert submit_limit("proj|||20|normal|normal\n", "") == (20, "GrpSubmitJobs of your association with account proj")


def test_no_submit_limit_anywhere_is_none():
    assert submit_limit("proj|||||normal\n", "normal|\n") is None
    assert submit_limit("", "") is None


def limited_runner(size="1001", count="10000", assoc=(0, ASSOC, ""), qos=(0, QOS, ""), queue=ARRAY_QUEUE):
    return FakeRunner(scontrol=[(0, CONFIG.format(size=size, count=count), "")], sacctmgr=[assoc, qos],
                      squeue=[(0, queue, "")], sacct=[(0, "", "")])


def test_limits_are_read_once(tmp_path):
    runner = limited_runner(size="300")
    ex = SlurmExecutor(runner)
    assert ex.array_limit() == 300
    assert ex.limits()["submit_limit"] == (8, "MaxSubmitJobsPerUser of QOS normal")
    ex.check_room(1)
    assert len(runner.argvs("scontrol")) == 1 and len(runner.argvs("sacctmgr")) == 2


def test_array_limit_defaults_to_slurms_default_and_is_zero_without_arrays():
    runner = FakeRunner(scontrol=[(0, "MaxJobCount = 10\n", "")], sacctmgr=[(1, "", "sacctmgr: error: x")])
    assert SlurmExecutor(runner).array_limit() == 1001
    assert SlurmExecutor(FakeRunner(), arrays=False).array_limit() == 0  # asks nothing


def test_check_room_passes_up_to_the_submit_limit(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    ex = SlurmExecutor(limited_runner())
    ex.jobs(plan)
    assert ex.queued[1] == 4 + 2 + 1  # mine: array 40's pending tasks 2-5, its two running tasks, job 17
    ex.check_room(1)


def test_check_room_over_the_submit_limit_names_the_limit_and_its_source(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    ex = SlurmExecutor(limited_runner())
    ex.jobs(plan)
    with pytest.raises(SchedulerError) as info:
        ex.check_room(2)
    message = info.value.message
    assert "at most 8 queued (MaxSubmitJobsPerUser of QOS normal)" in message
    assert "you have 7 queued already" in message and "nothing was submitted" in message
    assert "--only" in info.value.hint


def test_check_room_over_max_job_count(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    ex = SlurmExecutor(limited_runner(count="20", assoc=(1, "", "sacctmgr: error: no accounting")))
    ex.jobs(plan)
    assert ex.queued[0] == 7 + 10  # every task in the queue counts, other users' too
    ex.check_room(3)
    with pytest.raises(SchedulerError, match="at most 20 .MaxJobCount. and has 17 already"):
        ex.check_room(4)


def test_check_room_without_sacctmgr_uses_max_job_count_only(tmp_path, as_root):
    runner = FakeRunner(scontrol=[(0, CONFIG.format(size=1001, count=50), "")],
                        sacctmgr=[FileNotFoundError("sacctmgr")])
    ex = SlurmExecutor(runner)
    ex.check_room(50)  # nothing queued yet: jobs() was not asked
    with pytest.raises(SchedulerError, match="MaxJobCount"):
        ex.check_room(51)


# --- reading arrays from squeue and sacct ------------------------------------------------------


def test_queue_counts_a_pending_array_record_as_its_task_count():
    data = json.loads(ARRAY_QUEUE)
    assert queue_counts(data, uid=0) == (4 + 2 + 1 + 10, 4 + 2 + 1)
    assert queue_counts(data, uid=None) == (17, 17)


def test_queue_counts_leaves_finished_jobs_out_of_mine():
    data = json.loads(squeue(job(5, "demo:finetune/a", "COMPLETED"), job(6, "demo:finetune/b", "RUNNING")))
    assert queue_counts(data, uid=0) == (2, 1)


def test_squeue_pending_array_record_becomes_one_job_per_task():
    jobs = parse_squeue_json(ARRAY_QUEUE, "demo:", uid=0)
    assert set(jobs) == {"40_0", "40_1", "40_2", "40_3", "40_4", "40_5", "17"}
    assert jobs["40_0"].state == RUNNING and jobs["40_0"].job_id == "40_0"
    pending = jobs["40_4"]
    assert (pending.state, pending.reason, pending.node_id, pending.node_hash) == (
        PENDING, "JobArrayTaskLimit", "array/eval/abc123", "abc123")


def test_jobs_keys_array_tasks_like_sacct(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    jobs = SlurmExecutor(limited_runner()).jobs(plan)
    assert {"40_0", "40_5", "17"} <= set(jobs) and "90_0" not in jobs


def sacct_row(**fields) -> str:
    row = {"JobID": "", "State": "COMPLETED", "ExitCode": "0:0", "Reason": "None", "Start": "1795624478",
           "End": "1795624490", "Comment": "", "JobName": "", **fields}
    return SACCT_DELIMITER.join(row[f] for f in SACCT_FIELDS)


def test_parse_sacct_text_expands_an_array_that_never_started():
    text = "\n".join([
        sacct_row(JobID="12_[0-2]", State="CANCELLED by 1000", Reason="DependencyNeverSatisfied",
                  Start="Unknown", End="1795624481", Comment="abc123", JobName="demo:array/eval/abc123"),
        sacct_row(JobID="13_0", Comment="d", JobName="demo:array/finetune/d"),
        sacct_row(JobID="13_0.batch", Comment="d", JobName="batch"),
        sacct_row(JobID="13_1", State="FAILED", ExitCode="2:0", Comment="d", JobName="demo:array/finetune/d"),
        sacct_row(JobID="14_[0-1]", State="CANCELLED", JobName="other:array/eval/x"),
    ]) + "\n"
    jobs = parse_sacct_text(text, "demo:")
    assert set(jobs) == {"12_0", "12_1", "12_2", "13_0", "13_1"}
    never = jobs["12_1"]
    assert (never.job_id, never.state, never.node_id, never.node_hash, never.start) == (
        "12_1", CANCELLED, "array/eval/abc123", "abc123", None)
    assert jobs["13_0"].state == COMPLETED and jobs["13_0"].node_id == "array/finetune/d"
    assert (jobs["13_1"].state, jobs["13_1"].exit_code) == (FAILED, 2)


# --- scancel -----------------------------------------------------------------------------------


def test_compact_job_ids_groups_tasks_per_array():
    ids = ["17", "24_1", "24_0", "24_3", "25_5", "17", "18"]
    assert compact_job_ids(ids) == ["17", "18", "24_[0-1,3]", "25_5"]
    assert compact_job_ids([]) == []


def test_cancel_array_tasks_in_one_scancel_call():
    runner = FakeRunner(scancel=[(0, "", "")])
    SlurmExecutor(runner).cancel(["40_2", "40_3", "40_4", "17"])
    assert runner.argvs("scancel") == [["scancel", "17", "40_[2-4]"]]
