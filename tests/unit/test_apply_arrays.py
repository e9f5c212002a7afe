"""apply with job arrays against the fake scheduler: few sbatch calls, aftercorr, exactly-once, retries."""

from __future__ import annotations

import re
import sqlite3

import pytest

from cruijff.run.apply import apply, cancel
from cruijff.errors import SchedulerError
from cruijff.run.state import SCHEMA_VERSION, State
from cruijff.run.status import collect
from tests.helpers_plans import Crash, FakeScheduler, make_plan

RUNS = 5
N = RUNS * (1 + 2) + 1  # 5 runs × (finetune + 2 evals) + 1 base eval
# The batches: the fine-tune array, the base eval (alone: a plain job), one eval array per task.
SUBMISSIONS = 4


def arrays(tmp_path, **kw):
    return make_plan(tmp_path, runs=RUNS, evals_per_run=2, base_evals=1, **kw)


def fake_with_arrays(**kw) -> FakeScheduler:
    return FakeScheduler(max_array_size=1001, **kw)


def states(plan, fake):
    return {n.id: n.label for n in collect(plan.output_dir, fake).nodes}


def array_of(fake, kind: str) -> list[dict]:
    return [a for a in fake.arrays if a["spec"].name.startswith(f"array/{kind}/")]


@pytest.mark.parametrize("runs", [5, 40])
def test_first_apply_makes_one_submission_per_stage_whatever_the_number_of_runs(tmp_path, runs):
    plan = make_plan(tmp_path, runs=runs, evals_per_run=2, base_evals=1)
    fake = fake_with_arrays()
    result = apply(plan.output_dir, fake)
    assert fake.sbatch_calls == result.sbatch_calls == SUBMISSIONS
    assert sorted(n for n, _ in result.submitted) == sorted(n.id for n in plan.nodes)


def test_array_tasks_are_recorded_as_array_id_underscore_task(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays()
    apply(plan.output_dir, fake)
    (ft,) = array_of(fake, "finetune")
    with State(plan.output_dir) as st:
        current = st.current()
    for r in range(RUNS):
        sub = current[f"finetune/r{r}"]
        assert (sub.job_id, sub.batch, sub.task) == (f"{ft['id']}_{sub.task}", ft["spec"].name, sub.task)
        assert ft["nodes"][sub.task] == f"finetune/r{r}"
    base = current["base_eval/tiny/t0"]
    assert re.fullmatch(r"\d+", base.job_id) and base.batch is None and base.task is None


def test_eval_arrays_wait_for_their_own_finetune_task_with_aftercorr(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays()
    result = dict(apply(plan.output_dir, fake).submitted)
    (ft,) = array_of(fake, "finetune")
    evals = array_of(fake, "eval")
    assert len(evals) == 2
    for ev in evals:
        assert ev["spec"].after_corr == ft["id"] and ev["spec"].after_ok == ()
    for r in range(RUNS):
        finetune_job = result[f"finetune/r{r}"]
        for t in range(2):
            assert fake.deps_of(result[f"eval/r{r}/epoch_0/t{t}"]) == [finetune_job]


# Re-apply submitting nothing, a failed fine-tune blocking its evals, a crash whose job vanished,
# a changed node, --only, --dry-run, jobs adopted when state.db is lost, cancel then retry:
# tests/unit/test_apply.py, parametrized over arrays off and on.


@pytest.mark.parametrize("k", range(1, SUBMISSIONS + 1))
def test_crash_after_an_array_sbatch_adopts_its_tasks_and_never_submits_twice(tmp_path, k):
    plan = arrays(tmp_path)
    fake = fake_with_arrays(crash_after=k)
    with pytest.raises(Crash):
        apply(plan.output_dir, fake)
    with State(plan.output_dir) as st:
        lost = sorted(s.node_id for s in st.all() if s.job_id is None)
    assert lost  # the k-th submission's intents: sbatch ran, its job ids were never committed
    result = apply(plan.output_dir, fake)
    assert sorted(n for n, _ in result.adopted) == lost
    assert fake.sbatch_calls == SUBMISSIONS
    assert all(len(jobs) == 1 for jobs in fake.jobs_by_node().values())
    with State(plan.output_dir) as st:
        assert all(s.job_id for s in st.current().values())
    fake.run_all()
    assert set(states(plan, fake).values()) == {"done"}


def test_crash_then_the_array_finished_and_vanished_is_recovered_from_records(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays(crash_after=1)  # the fine-tune array
    with pytest.raises(Crash):
        apply(plan.output_dir, fake)
    fake.run_all()
    fake.forget_finished()
    result = apply(plan.output_dir, fake)
    (ft,) = array_of(fake, "finetune")
    assert sorted(result.adopted) == sorted((f"finetune/r{r}", f"{ft['id']}_{r}") for r in range(RUNS))
    assert len(result.submitted) == N - RUNS and len(array_of(fake, "finetune")) == 1


def test_retry_failed_resubmits_only_that_task_as_a_plain_job_plus_its_evals(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays(fail={"finetune/r1"})
    apply(plan.output_dir, fake)
    fake.run_all()
    fake.fail.clear()
    retry = apply(plan.output_dir, fake, retry_failed=True)
    submitted = dict(retry.submitted)
    assert sorted(submitted) == ["eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1", "finetune/r1"]
    assert re.fullmatch(r"\d+", submitted["finetune/r1"])  # a plain job, not a new array
    assert len(array_of(fake, "finetune")) == 1
    for t in range(2):
        assert fake.deps_of(submitted[f"eval/r1/epoch_0/t{t}"]) == [submitted["finetune/r1"]]
    fake.run_all()
    assert set(states(plan, fake).values()) == {"done"}


def test_a_refused_array_keeps_state_consistent_and_the_next_apply_submits_it(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays(reject={"finetune/r0"})
    with pytest.raises(SchedulerError, match=r"finetune array array/finetune/\w+ failed after 0 of"):
        apply(plan.output_dir, fake)
    with State(plan.output_dir) as st:
        rows = st.all()
    assert len(rows) == RUNS and all(r.job_id is None and "Invalid account" in r.reason for r in rows)
    fake.reject.clear()
    result = apply(plan.output_dir, fake)
    assert len(result.submitted) == N and result.adopted == []
    assert all(len(jobs) == 1 for jobs in fake.jobs_by_node().values())


def test_no_room_in_the_queue_fails_before_any_submission(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays(room=3)
    with pytest.raises(SchedulerError, match=f"would queue {N} jobs"):
        apply(plan.output_dir, fake)
    assert fake.sbatch_calls == 0
    with State(plan.output_dir) as st:
        assert st.known_job_ids() == set() and st.all() == []


@pytest.mark.parametrize("room, fits", [(N - 1, False), (N, True)])
def test_room_is_counted_in_jobs_not_sbatch_calls(tmp_path, room, fits):
    plan = arrays(tmp_path)
    fake = fake_with_arrays(room=room)
    if fits:
        assert len(apply(plan.output_dir, fake).submitted) == N
    else:
        with pytest.raises(SchedulerError):
            apply(plan.output_dir, fake)


def test_status_shows_array_task_job_ids(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays()
    submitted = dict(apply(plan.output_dir, fake).submitted)
    shown = {n.id: n for n in collect(plan.output_dir, fake).nodes}
    (ft,) = array_of(fake, "finetune")
    assert shown["finetune/r3"].job_id == f"{ft['id']}_3" == submitted["finetune/r3"]
    assert all(shown[i].job_id == j and shown[i].state == "pending" for i, j in submitted.items())


def test_cancel_cancels_the_selected_array_tasks_only(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays()
    submitted = dict(apply(plan.output_dir, fake).submitted)
    out = cancel(plan.output_dir, fake, only="run:r1")
    r1 = ["eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1", "finetune/r1"]
    assert sorted(c["node"] for c in out["cancelled"]) == r1
    assert sorted(fake.cancelled) == sorted(submitted[n] for n in r1)
    assert all("_" in j for j in fake.cancelled)
    fake.run_all()
    shown = states(plan, fake)
    assert shown["finetune/r1"] == "cancelled" and shown["finetune/r2"] == "done"


def test_cancel_everything_cancels_every_task(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays()
    apply(plan.output_dir, fake)
    assert len(cancel(plan.output_dir, fake)["cancelled"]) == N
    assert fake.live_count() == 0


def test_evals_added_later_wait_on_the_live_finetune_tasks(tmp_path):
    plan = arrays(tmp_path)
    fake = fake_with_arrays()
    apply(plan.output_dir, fake, only="kind:finetune")
    (ft,) = array_of(fake, "finetune")
    later = dict(apply(plan.output_dir, fake).submitted)
    assert all(a["spec"].after_corr == ft["id"] for a in array_of(fake, "eval"))
    assert fake.deps_of(later["eval/r4/epoch_0/t1"]) == [f"{ft['id']}_4"]


# --- state.db: version 1 is upgraded in place ------------------------------------------------

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE submissions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id     TEXT NOT NULL,
    hash        TEXT NOT NULL,
    executor    TEXT NOT NULL,
    job_id      TEXT,
    created     REAL NOT NULL,
    submitted   REAL,
    final_state TEXT,
    exit_code   INTEGER,
    reason      TEXT,
    pid         INTEGER
);
CREATE INDEX submissions_node ON submissions (node_id, id);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO submissions (node_id, hash, executor, job_id, created, submitted, final_state, exit_code)
    VALUES ('finetune/a', 'h1', 'slurm', '42', 1.0, 2.0, 'completed', 0);
INSERT INTO submissions (node_id, hash, executor, created) VALUES ('eval/a/epoch_0/t', 'h2', 'slurm', 3.0);
"""


def test_a_version_1_state_db_is_upgraded_in_place_keeping_its_rows(tmp_path):
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.executescript(V1_SCHEMA)
    conn.close()
    with State(tmp_path) as st:
        current = st.current()
        assert (current["finetune/a"].job_id, current["finetune/a"].final_state) == ("42", "completed")
        assert current["eval/a/epoch_0/t"].job_id is None
        assert all(s.batch is None and s.task is None for s in current.values())
        rows = st.record_array_intent([("eval/b/epoch_0/t", "h3")], "slurm", "array/eval/abc", (4,))
        st.record_array_jobs(rows, "99")
        assert st.current()["eval/b/epoch_0/t"].job_id == "99_4"
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    conn.close()
    with State(tmp_path) as st:  # opening the upgraded database again changes nothing
        assert len(st.all()) == 3
