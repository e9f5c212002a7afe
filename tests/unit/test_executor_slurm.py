"""SlurmExecutor against recorded Slurm 22.05 output (tests/fixtures/slurm, see docs/dev/slurm.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cruijff.errors import SchedulerError
from cruijff.run.executors import slurm
from cruijff.run.executors.base import CANCELLED, COMPLETED, FAILED, PENDING, RUNNING, JobInfo
from cruijff.run.executors.slurm import SlurmExecutor
from cruijff.plan import Node, Plan, Resources

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class FakeRunner:
    """Answers each program from a queue of (returncode, stdout, stderr); records every call."""

    def __init__(self, **answers):
        self.answers = {prog: list(a) for prog, a in answers.items()}
        self.calls: list[tuple[list[str], dict | None]] = []

    def __call__(self, argv, env=None):
        self.calls.append((list(argv), dict(env) if env else None))
        queue = self.answers.get(argv[0])
        if not queue:
            raise AssertionError(f"unexpected call: {argv}")
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, BaseException):
            raise answer
        rc, out, err = answer
        return subprocess.CompletedProcess(argv, rc, out, err)

    def argvs(self, prog: str) -> list[list[str]]:
        return [a for a, _ in self.calls if a[0] == prog]


def make_plan(tmp_path: Path, experiment: str = "demo") -> tuple[Plan, dict[str, Node]]:
    res = Resources(gpus=1, cpus=2, mem="8G", time="01:00:00")
    nodes = (
        Node("finetune/run a", "finetune", (), res, "hash-a"),
        Node("eval/run a/epoch_0/t1", "eval", ("finetune/run a",), res, "hash-e"),
    )
    plan = Plan(experiment, str(tmp_path), str(tmp_path / "m.yaml"), "slurm", 1, {}, nodes)
    return plan, {n.id: n for n in nodes}


EMPTY_QUEUE = (0, '{"jobs": []}', "")


class Sleeps(list):
    def __call__(self, s):
        self.append(s)


# --- submit ---------------------------------------------------------------------------------


def test_submit_builds_the_command_line(tmp_path):
    plan, nodes = make_plan(tmp_path)
    runner = FakeRunner(sbatch=[(0, "4242\n", "")])
    job_id = SlurmExecutor(runner).submit(plan, nodes["eval/run a/epoch_0/t1"], ["17", "18"])
    assert job_id == "4242"
    (argv,) = runner.argvs("sbatch")
    assert argv == [
        "sbatch",
        "--parsable",
        "--job-name=demo:eval/run a/epoch_0/t1",
        "--comment=hash-e",
        f"--chdir={tmp_path}/eval/run a/epoch_0/t1",
        "--dependency=afterok:17:18",
        "--kill-on-invalid-dep=yes",
        f"{tmp_path}/eval/run a/epoch_0/t1/job.sbatch",
    ]


def test_submit_without_parents_has_no_dependency(tmp_path):
    plan, nodes = make_plan(tmp_path)
    runner = FakeRunner(sbatch=[(0, "7;cruijff\n", "")])  # --parsable on a named cluster
    assert SlurmExecutor(runner).submit(plan, nodes["finetune/run a"], []) == "7"
    (argv,) = runner.argvs("sbatch")
    assert not any(a.startswith("--dependency") for a in argv)
    assert "--kill-on-invalid-dep=yes" in argv


def test_submit_retries_transient_errors_with_backoff(tmp_path):
    """Answers that say the request never reached slurmctld are retried with backoff."""
    plan, nodes = make_plan(tmp_path)
    down = (1, "", "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n")
    again = (1, "", "sbatch: error: Job submit/allocate failed: Resource temporarily unavailable, try again\n")
    refused = (1, "", "sbatch: error: Batch job submission failed: Connection refused\n")
    runner = FakeRunner(sbatch=[down, again, refused, (0, "99\n", "")], squeue=[EMPTY_QUEUE])
    sleeps = Sleeps()
    ex = SlurmExecutor(runner, sleep=sleeps, backoff_s=1, max_backoff_s=3)
    assert ex.submit(plan, nodes["finetune/run a"], []) == "99"
    assert sleeps == [1, 2, 3]
    assert len(runner.argvs("sbatch")) == 4
    assert len(runner.argvs("squeue")) == 3  # before each retry: did the last try queue the job?


def test_a_timed_out_sbatch_is_settled_by_watching_the_queue_not_by_submitting_again(tmp_path, as_root):
    """Issue 17.3: "Socket timed out" is an unknown outcome: the job may land seconds later. The
    queue is watched for the settle window (2 × MessageTimeout) before sbatch runs again."""
    plan, nodes = make_plan(tmp_path)
    timeout = (1, "", "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n")
    landed = json.loads(fixture("squeue_pending.json"))
    landed["jobs"] = [dict(landed["jobs"][0], job_id=77, name="demo:finetune/run a", comment="hash-a",
                           submit_time=1000)]
    # the job appears at the 5th look (5 s after the timeout)
    runner = FakeRunner(sbatch=[timeout, (0, "78\n", "")], squeue=[EMPTY_QUEUE] * 4 + [(0, json.dumps(landed), "")])
    sleeps = Sleeps()
    ex = SlurmExecutor(runner, sleep=sleeps, clock=lambda: 1000.0, settle_s=20)
    assert ex.submit(plan, nodes["finetune/run a"], []) == "77"
    assert len(runner.argvs("sbatch")) == 1
    assert sum(sleeps) == 5


def test_a_timed_out_sbatch_whose_job_never_lands_is_retried_after_the_settle_window(tmp_path, as_root):
    plan, nodes = make_plan(tmp_path)
    timeout = (1, "", "sbatch: error: Socket timed out on send/recv operation\n")
    runner = FakeRunner(sbatch=[timeout, (0, "32\n", "")], squeue=[EMPTY_QUEUE])
    sleeps = Sleeps()
    ex = SlurmExecutor(runner, sleep=sleeps, clock=lambda: 1000.0, settle_s=20)
    assert ex.submit(plan, nodes["finetune/run a"], []) == "32"
    assert len(runner.argvs("sbatch")) == 2 and len(runner.argvs("squeue")) == 20
    assert sum(sleeps) == 20


def test_a_timed_out_sbatch_with_an_unreachable_queue_is_an_unknown_outcome(tmp_path):
    from cruijff.run.executors.base import SubmitUnknown

    plan, nodes = make_plan(tmp_path)
    timeout = (1, "", "sbatch: error: Socket timed out on send/recv operation\n")
    runner = FakeRunner(sbatch=[timeout], squeue=[(1, "", "squeue: error: Socket timed out\n")])
    with pytest.raises(SubmitUnknown, match="unknown"):
        SlurmExecutor(runner, sleep=Sleeps(), settle_s=3).submit(plan, nodes["finetune/run a"], [])
    assert len(runner.argvs("sbatch")) == 1


def test_the_settle_window_is_twice_slurms_message_timeout(tmp_path):
    runner = FakeRunner(scontrol=[(0, "MessageTimeout          = 7 sec\nMaxArraySize = 11\n", "")],
                        sacctmgr=[(1, "", "no")])
    assert SlurmExecutor(runner).settle_window() == 14
    assert SlurmExecutor(FakeRunner(scontrol=[(1, "", "down")])).settle_window() == 20  # the default 10 s


def test_submit_timeout_that_did_queue_the_job_is_not_submitted_twice(tmp_path, as_root):
    plan, nodes = make_plan(tmp_path)
    node = nodes["finetune/run a"]
    queued = json.loads(fixture("squeue_pending.json"))
    job = dict(queued["jobs"][0], job_id=31, name="demo:finetune/run a", comment="hash-a", submit_time=1000)
    stale = dict(job, job_id=30, submit_time=900)  # an earlier submission of the same node
    queued["jobs"] = [stale, job]
    runner = FakeRunner(
        sbatch=[(1, "", "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation\n")],
        squeue=[(0, json.dumps(queued), "")],
    )
    ex = SlurmExecutor(runner, sleep=Sleeps(), clock=lambda: 1000.0, settle_s=20)
    assert ex.submit(plan, node, []) == "31"
    assert len(runner.argvs("sbatch")) == 1


def test_submit_retries_when_the_timed_out_job_is_not_queued(tmp_path, as_root):
    plan, nodes = make_plan(tmp_path)
    timeout = (1, "", "sbatch: error: Socket timed out on send/recv operation\n")
    runner = FakeRunner(sbatch=[timeout, (0, "32\n", "")], squeue=[(0, fixture("squeue_pending.json"), "")])
    ex = SlurmExecutor(runner, sleep=Sleeps(), clock=lambda: 1000.0, settle_s=2)
    assert ex.submit(plan, nodes["finetune/run a"], []) == "32"
    assert len(runner.argvs("sbatch")) == 2 and len(runner.argvs("squeue")) == 2


def test_submit_gives_up_after_bounded_attempts(tmp_path):
    plan, nodes = make_plan(tmp_path)
    runner = FakeRunner(sbatch=[(1, "", "sbatch: error: Socket timed out on send/recv operation\n")], squeue=[EMPTY_QUEUE])
    sleeps = Sleeps()
    with pytest.raises(SchedulerError, match="transient error after 4 attempts"):
        SlurmExecutor(runner, sleep=sleeps, attempts=4, settle_s=2).submit(plan, nodes["finetune/run a"], [])
    assert len(sleeps) == 4 * 2  # each timeout: the settle window watched, 1 s a look


def test_submit_timeout_of_the_command_is_retried(tmp_path):
    plan, nodes = make_plan(tmp_path)
    runner = FakeRunner(sbatch=[subprocess.TimeoutExpired(["sbatch"], 120), (0, "5\n", "")], squeue=[EMPTY_QUEUE])
    assert SlurmExecutor(runner, sleep=Sleeps(), settle_s=1).submit(plan, nodes["finetune/run a"], []) == "5"


def test_submit_permanent_error_is_a_scheduler_error_with_a_hint(tmp_path):
    plan, nodes = make_plan(tmp_path)
    err = (
        "sbatch: error: Memory specification can not be satisfied\n"
        "sbatch: error: Batch job submission failed: Requested node configuration is not available\n"
    )
    runner = FakeRunner(sbatch=[(1, "", err)], squeue=[EMPTY_QUEUE])
    sleeps = Sleeps()
    with pytest.raises(SchedulerError) as info:
        SlurmExecutor(runner, sleep=sleeps).submit(plan, nodes["finetune/run a"], [])
    e = info.value
    assert "finetune/run a" in e.message
    assert "Requested node configuration is not available" in e.message
    assert "sbatch:" not in e.message
    assert "lower its resources" in e.hint
    assert "'--job-name=demo:finetune/run a'" in e.hint  # the command, shell-quoted
    assert sleeps == []  # permanent: no retry


def test_submit_without_sbatch_on_path(tmp_path):
    plan, nodes = make_plan(tmp_path)
    runner = FakeRunner(sbatch=[FileNotFoundError("sbatch")])
    with pytest.raises(SchedulerError, match="sbatch not found"):
        SlurmExecutor(runner).submit(plan, nodes["finetune/run a"], [])


def test_submit_output_without_a_job_id(tmp_path):
    plan, nodes = make_plan(tmp_path)
    runner = FakeRunner(sbatch=[(0, "Submitted batch job\n", "")])
    with pytest.raises(SchedulerError, match="no job id"):
        SlurmExecutor(runner).submit(plan, nodes["finetune/run a"], [])


# --- jobs -------------------------------------------------------------------------------------


@pytest.fixture
def as_root(monkeypatch):
    monkeypatch.setattr(slurm.os, "getuid", lambda: 0)  # the fixtures were recorded as root


def test_jobs_makes_one_squeue_and_one_sacct_call(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    runner = FakeRunner(squeue=[(0, fixture("squeue_live.json"), "")], sacct=[(0, fixture("sacct.txt"), "")])
    SlurmExecutor(runner, clock=lambda: 1795624500.0).jobs(plan)
    assert sorted(a[0] for a, _ in runner.calls) == ["sacct", "squeue"]  # asked at once, in two threads
    assert runner.argvs("squeue") == [["squeue", "--json", "--me"]]
    (sacct_argv,) = runner.argvs("sacct")
    assert "--parsable2" in sacct_argv and "--allocations" in sacct_argv and "--endtime=now" in sacct_argv
    assert any(a.startswith("--starttime=2026-") for a in sacct_argv)  # 28 days before the clock
    assert "--state=CA,CD,F,TO,OOM,NF,BF,DL,PR" in sacct_argv
    assert "--format=JobID,State,ExitCode,Reason,Start,End,Comment,JobName" in sacct_argv
    assert [env for a, env in runner.calls if a[0] == "sacct"] == [{"SLURM_TIME_FORMAT": "%s"}]


def test_jobs_parses_live_squeue(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    runner = FakeRunner(squeue=[(0, fixture("squeue_live.json"), "")],
                        sacct=[(1, "", "sacct: error: Slurm accounting storage is disabled")])
    jobs = SlurmExecutor(runner).jobs(plan)
    assert "23" not in jobs  # experiment "other"
    assert jobs["17"] == JobInfo(
        "17", "finetune/ok", COMPLETED, None, 0, 1795624478.0, 1795624478.0, "hash-ok"
    )
    assert jobs["18"].state == FAILED and jobs["18"].exit_code == 3  # raw wait status 768
    assert jobs["18"].reason == "NonZeroExitCode" and jobs["18"].node_id == "finetune/bad"
    assert jobs["19"].state == CANCELLED and jobs["19"].reason == "DependencyNeverSatisfied"
    running = jobs["20"]
    assert running.state == RUNNING and running.start == 1795624478.0
    assert running.end is None and running.exit_code is None  # end_time is the time limit, not an end
    assert jobs["22"].state == PENDING and jobs["22"].reason == "Dependency"
    assert jobs["22"].start is None and jobs["22"].node_hash == "hash-f"
    assert {"24_0", "24_1", "24_2"} <= set(jobs)  # array tasks keyed as sacct's JobID


def test_jobs_pending_array_and_plain_pending(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    runner = FakeRunner(squeue=[(0, fixture("squeue_pending.json"), "")], sacct=[(0, "", "")])
    jobs = SlurmExecutor(runner).jobs(plan)
    assert set(jobs) == {"17", "19", "24_0", "24_1", "24_2"}  # a pending array's record, one per task
    assert jobs["17"].state == PENDING and jobs["17"].reason is None  # "None" is no reason
    assert jobs["19"].reason == "Dependency"


def test_jobs_final_states(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    runner = FakeRunner(squeue=[(0, fixture("squeue_final.json"), "")], sacct=[(0, "", "")])
    jobs = SlurmExecutor(runner).jobs(plan)
    assert jobs["20"].state == FAILED and jobs["20"].reason == "TimeLimit"  # TIMEOUT
    assert jobs["20"].end == 1795624547.0
    assert jobs["21"].state == CANCELLED and jobs["21"].exit_code == 128 + 15  # scancel: SIGTERM
    assert jobs["22"].state == CANCELLED and jobs["22"].reason == "DependencyNeverSatisfied"


def test_jobs_merges_sacct_for_jobs_squeue_forgot(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    squeue = json.loads(fixture("squeue_final.json"))
    squeue["jobs"] = [j for j in squeue["jobs"] if j["job_id"] == 20]
    runner = FakeRunner(squeue=[(0, json.dumps(squeue), "")], sacct=[(0, fixture("sacct.txt"), "")])
    jobs = SlurmExecutor(runner).jobs(plan)
    assert set(jobs) == {"17", "18", "19", "20", "21", "22", "24_0", "24_1", "24_2"}
    assert jobs["18"] == JobInfo("18", "finetune/bad", FAILED, None, 3, 1795624478.0, 1795624478.0, "hash-bad")
    assert jobs["19"].state == CANCELLED and jobs["19"].reason == "Dependency"
    assert jobs["21"].state == CANCELLED  # "CANCELLED by 0"
    assert jobs["20"].reason == "TimeLimit"  # squeue wins where both know the job


def test_jobs_survives_sacct_without_accounting(tmp_path, as_root):
    plan, _ = make_plan(tmp_path)
    off = (1, "", "sacct: error: Slurm accounting storage is disabled\n")
    runner = FakeRunner(squeue=[(0, fixture("squeue_live.json"), "")], sacct=[off])
    sleeps = Sleeps()
    jobs = SlurmExecutor(runner, sleep=sleeps).jobs(plan)
    assert "17" in jobs and sleeps == [] and len(runner.argvs("sacct")) == 1


def test_jobs_without_accounting_but_not_with_a_failing_one(tmp_path, as_root):
    """Accounting disabled: squeue alone. sacct that hangs or errs: an error, never "no jobs"."""
    plan, _ = make_plan(tmp_path)
    disabled = (1, "", "Slurm accounting storage is disabled\n")
    runner = FakeRunner(squeue=[(0, fixture("squeue_pending.json"), "")], sacct=[disabled])
    assert "17" in SlurmExecutor(runner).jobs(plan)
    hang = subprocess.TimeoutExpired(["sacct"], 120)
    down = (1, "", "sacct: error: Problem talking to the database: Connection refused\n")
    for answer in (hang, down):
        runner = FakeRunner(squeue=[(0, fixture("squeue_pending.json"), "")], sacct=[answer])
        sleeps = Sleeps()
        with pytest.raises(SchedulerError, match="sacct failed"):
            SlurmExecutor(runner, sleep=sleeps).jobs(plan)
        assert sleeps == [] and len(runner.argvs("sacct")) == 1  # one try: status must not hang


def test_squeue_answer_with_errors_is_an_error_not_an_empty_queue(tmp_path):
    """22.05 squeue --json exits 0 with errors and no jobs when slurmctld is unreachable."""
    plan, _ = make_plan(tmp_path)
    answer = json.dumps({"errors": [{"description": "Failed while looking for jobs", "error_number": -1,
                                     "error": "Unspecified error", "source": "slurm_load_jobs"}], "jobs": []})
    runner = FakeRunner(squeue=[(0, answer, "")], sacct=[(0, "", "")])
    with pytest.raises(SchedulerError, match="squeue could not read the queue .*Failed while looking for jobs"):
        SlurmExecutor(runner).jobs(plan)


def test_jobs_ignores_other_users(tmp_path, monkeypatch):
    monkeypatch.setattr(slurm.os, "getuid", lambda: 1000)
    plan, _ = make_plan(tmp_path)
    runner = FakeRunner(squeue=[(0, fixture("squeue_live.json"), "")], sacct=[(0, "", "")])
    assert SlurmExecutor(runner).jobs(plan) == {}


def test_jobs_squeue_failure_is_a_scheduler_error(tmp_path):
    plan, _ = make_plan(tmp_path)
    runner = FakeRunner(squeue=[(1, "", "squeue: error: Invalid user: x\n")])
    with pytest.raises(SchedulerError, match="squeue failed: Invalid user"):
        SlurmExecutor(runner).jobs(plan)


def test_newer_slurm_json_shapes_are_understood():
    job = {
        "job_id": 5, "name": "demo:finetune/a", "user_id": 0, "comment": "h",
        "job_state": ["RUNNING", "COMPLETING"], "state_reason": "None",
        "start_time": {"set": True, "infinite": False, "number": 100},
        "end_time": {"set": True, "infinite": False, "number": 200},
        "exit_code": {"status": ["EXITED"], "return_code": {"set": True, "number": 0}},
        "array_job_id": {"set": True, "number": 0}, "array_task_id": {"set": False, "number": 0},
    }
    failed = dict(job, job_id=6, job_state=["FAILED"],
                  exit_code={"status": ["EXITED"], "return_code": {"set": True, "number": 2}})
    jobs = slurm.parse_squeue_json(json.dumps({"jobs": [job, failed]}), "demo:", uid=0)
    assert jobs["5"].state == RUNNING and jobs["5"].start == 100.0 and jobs["5"].end is None
    assert jobs["6"].state == FAILED and jobs["6"].exit_code == 2


def test_state_mapping():
    expect = {
        "PENDING": PENDING, "CONFIGURING": PENDING, "RUNNING": RUNNING, "COMPLETING": RUNNING,
        "COMPLETED": COMPLETED, "FAILED": FAILED, "TIMEOUT": FAILED, "OUT_OF_MEMORY": FAILED,
        "NODE_FAIL": FAILED, "BOOT_FAIL": FAILED, "CANCELLED": CANCELLED, "DEADLINE": CANCELLED,
        "PREEMPTED": CANCELLED, "WHATEVER": "unknown",
    }
    for s, n in expect.items():
        assert slurm.normalise_state(s) == n


def test_exit_code_decoding():
    assert slurm.decode_wait_status(768) == 3
    assert slurm.decode_wait_status(9) == 137
    assert slurm.decode_wait_status(0) == 0
    assert slurm._sacct_exit_code("3:0") == 3
    assert slurm._sacct_exit_code("0:9") == 137
    assert slurm._sacct_exit_code("") is None


def test_squeue_garbage_is_a_scheduler_error():
    with pytest.raises(SchedulerError, match="not JSON"):
        slurm.parse_squeue_json("squeue: error: something", "demo:")


# --- cancel, limits, availability -------------------------------------------------------------


def test_cancel_is_one_scancel_call():
    runner = FakeRunner(scancel=[(0, "", "")])
    SlurmExecutor(runner).cancel(["17", "18", "24_1"])
    assert runner.argvs("scancel") == [["scancel", "17", "18", "24_1"]]


def test_cancel_nothing_calls_nothing():
    runner = FakeRunner()
    SlurmExecutor(runner).cancel([])
    assert runner.calls == []


def test_cancel_failure_raises():
    runner = FakeRunner(scancel=[(1, "", "scancel: error: Invalid job id abc\n")])
    with pytest.raises(SchedulerError, match="Invalid job id abc"):
        SlurmExecutor(runner).cancel(["abc"])


def test_cluster_limits_from_scontrol():
    runner = FakeRunner(scontrol=[(0, fixture("scontrol_show_config.txt"), "")])
    assert slurm.cluster_limits(runner) == {"MaxArraySize": 1001, "MaxJobCount": 20000, "MessageTimeout": 10}
    assert runner.argvs("scontrol") == [["scontrol", "show", "config"]]


def test_cluster_limits_failure():
    runner = FakeRunner(scontrol=[(1, "", "scontrol: error: Unable to contact slurm controller\n")])
    with pytest.raises(SchedulerError, match="scontrol show config failed"):
        slurm.cluster_limits(runner)


def test_slurm_available_follows_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert not slurm.slurm_available()
    fake = tmp_path / "sbatch"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert slurm.slurm_available()


def test_executor_name():
    assert SlurmExecutor.name == "slurm"
