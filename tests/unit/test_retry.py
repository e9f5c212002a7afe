"""Failure-aware retries decided by the next `apply` from the scheduler's final state (cruijff.run.retry).

The local cluster does not enforce memory (TaskPlugin=task/none, no cgroups): no job there can end
OUT_OF_MEMORY. So the scheduler's answer is faked at the parse boundary only: sacct's own output
format (SACCT_FIELDS, --parsable2 with the unit-separator delimiter) goes through the real parser
(parse_sacct_text) into apply, decide, the overrides file, record.jsonl and status.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cruijff.run.apply import HELD, SUBMIT, apply
from cruijff.run.executors.slurm.parse import SACCT_DELIMITER, parse_sacct_text
from cruijff.run.retry import NONE, SMALLER_BATCH, UNCHANGED, after_failure
from cruijff.run.status import collect
from tests.helpers_plans import FakeScheduler, make_plan


@pytest.mark.parametrize("state, exit_code, finetune, batch, want", [
    ("OUT_OF_MEMORY", 0, True, (8, 1), (SMALLER_BATCH, 4, 2)),
    ("OUT_OF_MEMORY", 0, True, (3, 2), (SMALLER_BATCH, 1, 4)),
    ("OUT_OF_MEMORY", 0, True, (1, 8), (NONE, None, None)),  # batch size 1: nothing smaller
    ("OUT_OF_MEMORY", 0, False, (None, None), (NONE, None, None)),  # an evaluation: no batch to halve
    ("NODE_FAIL", 0, True, (8, 1), (UNCHANGED, None, None)),
    ("BOOT_FAIL", 0, False, (None, None), (UNCHANGED, None, None)),
    ("FAILED", 1, True, (8, 1), (NONE, None, None)),  # a real error: no automatic retry
    (None, 1, True, (8, 1), (NONE, None, None)),
    ("TIMEOUT", 0, True, (8, 1), (NONE, None, None)),
])
def test_the_policy_table(state, exit_code, finetune, batch, want):
    r = after_failure(state, exit_code, finetune=finetune, batch_size=batch[0], gradient_accumulation_steps=batch[1])
    assert (r.action, r.batch_size, r.gradient_accumulation_steps) == want
    assert r.automatic == (want[0] != NONE) and r.reason
    if state == "FAILED":
        assert r.reason == "FAILED, exit 1"


class SacctScheduler(FakeScheduler):
    """The fake queue, except that finished jobs named in `sacct` are what sacct's text says."""

    sacct: dict[str, str] = {}

    def jobs(self, plan):
        jobs = super().jobs(plan)
        for job_id, state in self.sacct.items():
            d = self._jobs[job_id]
            line = SACCT_DELIMITER.join([job_id, state, "0:125" if state == "OUT_OF_MEMORY" else "0:0", "None",
                                         str(int(d["start"])), str(int(d["end"])), d["hash"],
                                         f"{plan.experiment}:{d['node']}"])
            jobs.update(parse_sacct_text(line + "\n", f"{plan.experiment}:"))
        return jobs


def finetune_yaml(plan, node_id: str, batch_size: int) -> Path:
    run = Path(plan.output_dir) / node_id
    (run / "finetune.yaml").write_text(
        f"output_dir: {run}\nbatch_size: {batch_size}\ngradient_accumulation_steps: 2\nepochs: 2\n"
        "optimizer:\n  lr: 0.001\n")
    return run


def failed_once(tmp_path, state: str, batch_size: int = 8):
    plan = make_plan(tmp_path, runs=1, evals_per_run=1, base_evals=0)
    run = finetune_yaml(plan, "finetune/r0", batch_size)
    fake = SacctScheduler(fail={"finetune/r0"})
    first = dict(apply(plan.output_dir, fake).submitted)
    fake.run_all()
    fake.sacct = {first["finetune/r0"]: state}
    fake.fail = set()
    return plan, run, fake, first


def test_out_of_memory_seen_by_the_scheduler_is_retried_at_half_batch_by_the_next_apply(tmp_path):
    from omegaconf import OmegaConf

    from cruijff.train import resume

    plan, run, fake, first = failed_once(tmp_path, "OUT_OF_MEMORY")
    before = {n.id: n for n in collect(plan.output_dir, fake).nodes}["finetune/r0"]
    assert before.label == "failed" and before.reason == "out of memory (OUT_OF_MEMORY)"
    result = apply(plan.output_dir, fake)  # no --retry-failed: this failure is not the researcher's
    assert result.decisions["finetune/r0"].action == SUBMIT
    assert result.decisions["finetune/r0"].reason == \
        "out of memory (OUT_OF_MEMORY) at batch_size 8, retried at batch_size 4"
    assert {n for n, _ in result.submitted} == {"finetune/r0", "eval/r0/epoch_0/t0"}
    overrides = json.loads((run / "overrides.json").read_text())
    assert (overrides["batch_size"], overrides["gradient_accumulation_steps"]) == (4, 4)
    cfg = OmegaConf.load(run / "finetune.yaml")
    resume.apply_overrides(cfg)  # what the recipe does at its start
    assert (cfg.batch_size, cfg.gradient_accumulation_steps) == (4, 4)
    [event] = [json.loads(line) for line in (run / "record.jsonl").read_text().splitlines()
               if '"oom_retry"' in line]
    assert (event["failed_job_id"], event["previous_batch_size"], event["batch_size"]) == \
        (first["finetune/r0"], 8, 4)
    fake.run_all()
    after = {n.id: n for n in collect(plan.output_dir, fake).nodes}
    assert after["finetune/r0"].label == "done"
    assert after["finetune/r0"].note == "retried with batch_size 4 after out-of-memory"
    assert after["eval/r0/epoch_0/t0"].label == "done"


def test_a_second_out_of_memory_halves_again_down_to_one_then_holds(tmp_path):
    plan, run, fake, first = failed_once(tmp_path, "OUT_OF_MEMORY", batch_size=2)
    second = dict(apply(plan.output_dir, fake).submitted)
    assert json.loads((run / "overrides.json").read_text())["batch_size"] == 1
    fake.fail = {"finetune/r0"}
    fake.run_all()
    fake.sacct = {second["finetune/r0"]: "OUT_OF_MEMORY"}
    result = apply(plan.output_dir, fake)
    assert result.decisions["finetune/r0"].action == HELD
    assert "at batch_size 1" in result.decisions["finetune/r0"].reason
    assert result.submitted == []


def test_a_node_failure_is_retried_unchanged_and_a_real_error_is_held(tmp_path):
    plan, run, fake, _ = failed_once(tmp_path / "nf", "NODE_FAIL")
    result = apply(plan.output_dir, fake)
    assert result.decisions["finetune/r0"].reason == "node failure (NODE_FAIL), retried unchanged"
    assert not (run / "overrides.json").exists()
    plan, run, fake, _ = failed_once(tmp_path / "err", "FAILED")
    result = apply(plan.output_dir, fake)
    assert result.decisions["finetune/r0"].action == HELD and result.submitted == []
    assert result.decisions["finetune/r0"].reason == "failed (use --retry-failed)"
    assert not (run / "overrides.json").exists()
