"""Plan-time SLURM layout and fit messages (cruijff/fit.py)."""

from __future__ import annotations

from pathlib import Path

from cruijff.fit import fit_problems, submission_layout
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
