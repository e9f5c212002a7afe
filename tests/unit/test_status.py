"""status: the merged view of a mixed grid, pinned as golden text and JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cruijff.run.apply import apply, cancel
from cruijff.commands.draw import render_plain
from cruijff.run.status import collect
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


def test_status_mixed_grid_text_and_json_are_pinned(mixed, tmp_path, monkeypatch):
    plan, fake = mixed
    monkeypatch.chdir(tmp_path)  # paths in messages are relative to here: exp/finetune/...
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
    from cruijff.run.records import record_error

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
    text = " ".join(render_plain(report, width=400).split())  # tmp paths differ in length (xdist workers)
    assert "failed finetune/r1 (exit 1: fine-tune failed: no row of the training split keeps an answer token; " \
           f"see {plan.output_dir}/finetune/r1/slurm-" in text  # a path that works from here


def test_a_big_grid_is_summarised_by_stage_unless_all(tmp_path):
    """Above GRID_ROWS rows: a line per stage with its state counts; full=True (--all, --only) draws every row."""
    from cruijff.run.status import GRID_ROWS

    plan = make_plan(tmp_path, runs=GRID_ROWS + 5, evals_per_run=2, base_evals=0, fail={"finetune/r3"})
    fake = FakeScheduler(fail={"finetune/r3"}, clock=CLOCK)
    apply(plan.output_dir, fake)
    fake.run_all()
    report = collect(plan.output_dir, fake, now=fake.clock)
    summary = render_plain(report)
    lines = summary.splitlines()
    assert lines[1].split() == ["stage", "done", "failed", "blocked", "total"]
    assert lines[2].split() == ["finetune", str(GRID_ROWS + 4), "1", "·", str(GRID_ROWS + 5)]
    assert lines[3].split() == ["t0@e0", str(GRID_ROWS + 4), "·", "1", str(GRID_ROWS + 5)]
    assert f"{GRID_ROWS + 5} rows summarised by stage" in summary and "r44 " not in summary
    full = render_plain(report, full=True)
    assert any(line.split()[:2] == [f"r{GRID_ROWS + 4}", "done"] for line in full.splitlines())


def test_a_summary_reads_no_eval_logs(tmp_path):
    """The summary shows no scores, so `status` reads none (4,000 inspect logs take seconds)."""
    from cruijff.run.status import GRID_ROWS, summarised

    plan = make_plan(tmp_path, runs=GRID_ROWS + 1, evals_per_run=1, base_evals=0)
    fake = FakeScheduler(clock=CLOCK)
    apply(plan.output_dir, fake)
    fake.run_all()
    write_score(plan, "eval/r0/epoch_0/t0", 0.75)
    assert summarised(plan) and not summarised(plan, show_all=True) and not summarised(plan, only="run:r0")
    assert not summarised(make_plan(tmp_path / "small", runs=GRID_ROWS, base_evals=0))
    scored = {n.id: n.score for n in collect(plan.output_dir, fake).nodes}
    assert scored["eval/r0/epoch_0/t0"][1] == 0.75
    assert all(n.score is None for n in collect(plan.output_dir, fake, scores=False).nodes)


def test_headline_scores_are_read_once_then_from_the_cache(tmp_path, monkeypatch):
    from cruijff.results import scores

    plan = make_plan(tmp_path, runs=2, evals_per_run=1, base_evals=0)
    fake = FakeScheduler(clock=CLOCK)
    apply(plan.output_dir, fake)
    fake.run_all()
    write_score(plan, "eval/r0/epoch_0/t0", 0.75)
    write_score(plan, "eval/r1/epoch_0/t0", 0.25)
    real, reads = scores.headline, []
    monkeypatch.setattr(scores, "headline", lambda d: reads.append(d) or real(d))

    def shown():
        return {n.id: n.score[1] for n in collect(plan.output_dir, fake).nodes if n.score}

    assert shown() == {"eval/r0/epoch_0/t0": 0.75, "eval/r1/epoch_0/t0": 0.25} and len(reads) == 2
    assert shown() == {"eval/r0/epoch_0/t0": 0.75, "eval/r1/epoch_0/t0": 0.25} and len(reads) == 2
    os.utime(next((tmp_path / "exp" / "eval/r1/epoch_0/t0/logs").iterdir()), ns=(1, 1))  # a log changed
    write_score(plan, "eval/r1/epoch_0/t0", 0.5)
    assert shown()["eval/r1/epoch_0/t0"] == 0.5 and len(reads) == 3


def test_watch_redraws_until_nothing_is_pending_or_running(mixed, monkeypatch):
    """--watch: one JSON envelope per refresh (--json) or the grid redrawn in place, until settled."""
    from click.testing import CliRunner

    import cruijff.commands.run as run_commands
    import cruijff.run.status as status_module
    from cruijff.cli import cli

    plan, fake = mixed
    running = collect(plan.output_dir, fake)
    fake.run_all()
    settled = collect(plan.output_dir, fake)
    assert not running.settled and settled.settled
    for as_json in (True, False):
        reports = iter([running, running, settled])
        monkeypatch.setattr(status_module, "collect", lambda *a, **k: next(reports))
        monkeypatch.setattr(run_commands.time, "sleep", lambda s: None)
        res = CliRunner().invoke(cli, ["status", plan.output_dir, "--executor", "local", "--watch", "0.01",
                                       *(["--json"] if as_json else [])])
        assert res.exit_code == 1, (res.output, res.exception)  # finetune/r1 failed
        if as_json:
            lines = [json.loads(line) for line in res.stdout.splitlines()]
            assert [x["kind"] for x in lines] == ["cruijff.status"] * 3 and lines[0]["schema_version"] >= 1
            assert [x["counts"].get("running", 0) for x in lines] == [1, 1, 0]
        else:
            assert res.stdout.strip() == render_plain(settled, width=80).strip()  # the last refresh stays


def test_status_exits_1_while_a_node_failed_or_is_blocked_after_its_whole_answer(mixed, tmp_path):
    """A failed run is visible to scripts; --json stays one complete object (issue 23, item 5)."""
    from click.testing import CliRunner

    import cruijff.commands.run as run_commands
    from cruijff.cli import cli

    plan, fake = mixed
    run_commands_executor = run_commands._executor
    try:
        run_commands._executor = lambda *a, **k: fake
        res = CliRunner().invoke(cli, ["status", plan.output_dir, "--json"])
        assert res.exit_code == 1, res.output
        data = json.loads(res.stdout)
        assert data["ok"] is False and data["counts"]["failed"] == 1 and len(data["nodes"]) == len(plan.nodes)
        res = CliRunner().invoke(cli, ["status", plan.output_dir])
        assert res.exit_code == 1 and "failed  finetune/r1" in res.stdout
        res = CliRunner().invoke(cli, ["status", plan.output_dir, "--only", "run:r0", "--json"])
        assert res.exit_code == 0 and json.loads(res.stdout)["ok"] is True  # r0 is done
    finally:
        run_commands._executor = run_commands_executor


def test_a_failed_fine_tune_without_a_recorded_error_shows_its_last_exception(mixed):
    """A torchtune traceback records no error event; its last line is the reason (as for evaluations)."""
    plan, fake = mixed
    [r1] = [n for n in collect(plan.output_dir, fake).nodes if n.id == "finetune/r1"]
    out = Path(plan.output_dir) / "finetune" / "r1" / f"slurm-{r1.job_id}.out"
    out.write_text("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
                   "FileNotFoundError: [Errno 2] No such file or directory: '/m/config.json'\n")
    [r1] = [n for n in collect(plan.output_dir, fake).nodes if n.id == "finetune/r1"]
    assert r1.reason == "FileNotFoundError: [Errno 2] No such file or directory: '/m/config.json'"
    assert "FileNotFoundError" in render_plain(collect(plan.output_dir, fake), width=300)


def test_the_grid_is_not_cut_off_in_80_columns_or_a_pipe(mixed, capsys, monkeypatch):
    """issue 23, item 9: a pipe (or an 80-column terminal) gets every line whole."""
    from cruijff.commands.draw.status import print_status

    plan, fake = mixed
    monkeypatch.setenv("COLUMNS", "80")
    report = collect(plan.output_dir, fake, now=fake.clock + 10)
    print_status(report)
    printed = capsys.readouterr().out
    assert "…" not in printed
    wide = render_plain(report, width=400)
    row = next(line for line in wide.splitlines() if line.startswith("r0 "))
    assert len(row.rstrip()) > 80 and row.rstrip() in printed
