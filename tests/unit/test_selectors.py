"""--only selectors: kinds, globs, unions, descendants, and clear errors."""

from __future__ import annotations

import pytest

from cruijff.errors import UsageError
from cruijff.run.selectors import ancestors, select
from tests.helpers_plans import make_plan


@pytest.fixture
def plan(tmp_path):
    return make_plan(tmp_path, runs=2, evals_per_run=2, epochs=2, base_evals=1)


def test_empty_selects_everything(plan):
    assert select(plan, None) == {n.id for n in plan.nodes}


@pytest.mark.parametrize("expr, expected", [
    ("run:r0", {"finetune/r0", "eval/r0/epoch_0/t0", "eval/r0/epoch_0/t1", "eval/r0/epoch_1/t0", "eval/r0/epoch_1/t1"}),
    ("kind:finetune", {"finetune/r0", "finetune/r1"}),
    ("kind:base_eval", {"base_eval/tiny/t0"}),
    ("task:t1", {"eval/r0/epoch_0/t1", "eval/r0/epoch_1/t1", "eval/r1/epoch_0/t1", "eval/r1/epoch_1/t1"}),
    ("id:eval/*/epoch_1/t0", {"eval/r0/epoch_1/t0", "eval/r1/epoch_1/t0"}),
    ("eval/r1/epoch_0/*", {"eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1"}),
    ("finetune/r1+", {"finetune/r1", "eval/r1/epoch_0/t0", "eval/r1/epoch_0/t1", "eval/r1/epoch_1/t0", "eval/r1/epoch_1/t1"}),
    ("kind:finetune,kind:base_eval", {"finetune/r0", "finetune/r1", "base_eval/tiny/t0"}),
    ("run:r*,  base_eval/*", {n for n in ["finetune/r0", "finetune/r1", "base_eval/tiny/t0"]} | {
        f"eval/r{r}/epoch_{e}/t{t}" for r in range(2) for e in range(2) for t in range(2)}),
])
def test_selectors(plan, expr, expected):
    assert select(plan, expr) == expected


def test_model_selects_runs_and_base_evals(plan):
    assert select(plan, "model:tiny") == {n.id for n in plan.nodes}


@pytest.mark.parametrize("expr, message", [
    ("colour:red", "unknown selector kind 'colour'"),
    ("run:", "has no pattern"),
    ("kind:training", "no node kind matches"),
    ("run:nope", "'run:nope' matches no node of this plan"),
    ("run:r0,task:t9", "'task:t9' matches no node"),  # one dead term in a union is a typo too
    ("model=tiny", "write model:tiny"),
])
def test_bad_selectors_are_usage_errors(plan, expr, message):
    with pytest.raises(UsageError, match=message):
        select(plan, expr)


def test_ancestors(plan):
    assert ancestors(plan, {"eval/r0/epoch_1/t0"}) == {"finetune/r0"}
    assert ancestors(plan, {"finetune/r0"}) == set()


def test_no_match_lists_what_exists(plan):
    with pytest.raises(UsageError) as info:
        select(plan, "run:r9")
    assert "run:{r0,r1}" in info.value.hint and "model:{tiny}" in info.value.hint
    assert "kind:{finetune,eval,base_eval}" in info.value.hint


@pytest.mark.parametrize("command", [["status"], ["cancel"], ["apply", "--dry-run"]])
@pytest.mark.parametrize("only", ["run:nope", "model=tiny"])
def test_commands_refuse_an_only_that_selects_nothing(plan, command, only, capsys):
    from cruijff.cli import main

    with pytest.raises(SystemExit) as info:
        main([command[0], plan.output_dir, *command[1:], "--only", only, "--executor", "local"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--only" in err and "Traceback" not in err
