"""status: the merged view of a mixed grid, pinned as golden text and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cruijff.apply import apply, cancel
from cruijff.status import collect, render_plain
from tests.helpers_plans import FakeScheduler, make_plan, write_score

GOLDEN = Path(__file__).parent / "golden"
CLOCK = 1_700_000_000.0


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path}; UPDATE_GOLDEN=1 to accept"


@pytest.fixture
def mixed(tmp_path):
    """r0 done with scores, r1 failed (evals blocked), r2 running, r3 cancelled, r4 not
    submitted, base t0 done, base t1 changed since it was submitted."""
    plan = make_plan(tmp_path, runs=5, evals_per_run=2, base_evals=2)
    fake = FakeScheduler(fail={"finetune/r1"}, clock=CLOCK)
    apply(plan.output_dir, fake, only="run:r0,run:r1,base_eval/*")
    fake.run_all()
    for node_id, v in [("eval/r0/epoch_0/t0", 0.75), ("eval/r0/epoch_0/t1", 0.5), ("base_eval/tiny/t0", 0.25)]:
        write_score(plan, node_id, v)
    apply(plan.output_dir, fake, only="run:r2,run:r3")
    fake.start("finetune/r2")
    cancel(plan.output_dir, fake, only="finetune/r3")
    make_plan(tmp_path, runs=5, evals_per_run=2, base_evals=2, changed={"base_eval/tiny/t1"})
    return plan, fake


def test_status_mixed_grid_text_and_json_are_pinned(mixed):
    plan, fake = mixed
    calls = fake.jobs_calls
    report = collect(plan.output_dir, fake, now=fake.clock + 10)
    assert fake.jobs_calls == calls + 1  # one scheduler query per refresh
    labels = {n.id: n.label for n in report.nodes}
    assert labels["eval/r1/epoch_0/t0"] == "blocked-by-finetune/r1"
    assert labels["eval/r3/epoch_0/t1"] == "blocked-by-finetune/r3"
    assert labels["finetune/r2"] == "running" and labels["eval/r2/epoch_0/t0"] == "pending"
    assert labels["finetune/r4"] == "not submitted"
    _check("status_mixed.txt", render_plain(report, width=110))
    data = json.loads(json.dumps(report.as_dict()).replace(plan.output_dir, "<out>"))
    assert data["schema_version"] == 1 and data["kind"] == "cruijff.status"
    _check("status_mixed.json", json.dumps(data, indent=2) + "\n")


def test_status_without_sacct_uses_records(mixed):
    """Finished jobs gone from squeue: states come from state.db and record.jsonl."""
    plan, fake = mixed
    before = {n.id: n.label for n in collect(plan.output_dir, fake).nodes}
    fake.forget_finished()
    after = {n.id: n.label for n in collect(plan.output_dir, fake).nodes}
    assert after == before


def test_status_only_and_no_state(tmp_path):
    plan = make_plan(tmp_path)
    report = collect(plan.output_dir, FakeScheduler(), only="kind:finetune")
    assert [n.id for n in report.nodes] == ["finetune/r0", "finetune/r1", "finetune/r2"]
    assert report.counts() == {"not submitted": 3}
    assert not (tmp_path / "exp" / "state.db").exists()


def test_a_failed_node_shows_the_error_its_job_recorded(mixed):
    """A job step that fails with a known cause appends an error event; status shows its first line."""
    from cruijff.records import record_error

    plan, fake = mixed
    record = Path(plan.output_dir) / "finetune" / "r1" / "record.jsonl"
    lines = record.read_text().splitlines(keepends=True)
    record.write_text("".join(lines[:-1]))  # the error comes between the job's start and end events
    record_error("fine-tune failed: no row of the training split keeps an answer token\nmore detail",
                 node_dir=str(record.parent))
    with record.open("a") as f:
        f.write(lines[-1])
    report = collect(plan.output_dir, fake, now=fake.clock + 10)
    [r1] = [n for n in report.nodes if n.id == "finetune/r1"]
    assert r1.state == "failed" and r1.reason == "fine-tune failed: no row of the training split keeps an answer token"
    text = render_plain(report, width=200)
    assert "failed  finetune/r1  (exit 1: fine-tune failed: no row of the training split keeps an answer token; " \
           "see finetune/r1/slurm-" in text
