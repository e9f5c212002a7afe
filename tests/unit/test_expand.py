"""Grid expansion: GitHub Actions' matrix include/exclude semantics, and stable unique run names."""

from __future__ import annotations

import itertools
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cruijff.compiler.expand import expand, format_value, run_name

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))


def points(runs) -> list[dict]:
    return [dict(r.point) for r in runs]


def as_set(dicts) -> set:
    return {tuple(sorted(d.items())) for d in dicts}


# ---------------------------------------------------------------------------------------------
# the documented example (docs.github.com: "Expanding or adding matrix configurations")

def test_github_include_example():
    grid = {"fruit": ["apple", "pear"], "animal": ["cat", "dog"],
            "include": [{"color": "green"}, {"color": "pink", "animal": "cat"}, {"fruit": "apple", "shape": "circle"},
                        {"fruit": "banana"}, {"fruit": "banana", "animal": "cat"}]}
    runs, problems = expand(grid, ["m"], ["d"])
    assert problems == []
    base = {"model": "m", "dataset": "d"}
    assert as_set(points(runs)) == as_set([
        {**base, "fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {**base, "fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {**base, "fruit": "pear", "animal": "cat", "color": "pink"},
        {**base, "fruit": "pear", "animal": "dog", "color": "green"},
        {**base, "fruit": "banana"},
        {**base, "fruit": "banana", "animal": "cat"},
    ])


def test_github_exclude_matches_partially():
    grid = {"os": ["macos", "windows"], "version": [12, 14, 16], "env": ["staging", "production"],
            "exclude": [{"os": "macos", "version": 12, "env": "production"}, {"os": "windows", "version": 16}]}
    runs, problems = expand(grid, ["m"], ["d"])
    assert problems == []
    assert len(runs) == 12 - 1 - 2
    assert not any(p["os"] == "windows" and p["version"] == 16 for p in points(runs))


def test_include_never_overwrites_original_values():
    runs, _ = expand({"lr": [1e-4], "include": [{"lr": 3e-4, "seed": 1}]}, ["m"], ["d"])
    # lr 3e-4 would overwrite an original value: a new run instead, with only the include's keys
    assert as_set(points(runs)) == as_set([{"model": "m", "dataset": "d", "lr": 1e-4},
                                           {"model": "m", "dataset": "d", "lr": 3e-4, "seed": 1}])


def test_later_include_may_overwrite_added_values():
    runs, _ = expand({"lr": [1e-4], "include": [{"seed": 1}, {"seed": 2}]}, ["m"], ["d"])
    assert points(runs) == [{"model": "m", "dataset": "d", "lr": 1e-4, "seed": 2}]


def test_new_run_without_model_when_several_is_a_problem():
    runs, problems = expand({"lora_rank": [4], "include": [{"lora_rank": 16}]}, ["a", "b"], ["d"])
    assert len(problems) == 1 and "which model" in problems[0][1].message
    assert problems[0][0] == ("grid", "include", 0)


def test_bool_and_int_are_different_values():
    runs, _ = expand({"packed": [True], "include": [{"packed": 1, "seed": 3}]}, ["m"], ["d"])
    assert len(runs) == 2


def test_format_value_and_names():
    assert format_value(3e-4) == "3e-4"
    assert format_value(1.0e-5) == "1e-5"
    assert format_value(0.1) == "0.1"
    assert format_value(64) == "64"
    assert format_value(True) == "true"
    assert format_value(None) == "none"
    assert format_value(["q_proj", "v_proj"]) == "q_proj+v_proj"
    assert format_value("a/b c") == "a-b-c"
    assert run_name({"model": "llama-1b", "dataset": "twins", "lr": 1e-4, "lora_rank": 8}) == "llama-1b_twins_r8_lr1e-4"
    assert run_name({"model": "m", "dataset": "d", "lr_scheduler": "cosine"}) == "m_d_sched-cosine"


# ---------------------------------------------------------------------------------------------
# properties, against a straightforward reading of the GitHub Actions rules

def reference(grid: dict, models: list, datasets: list) -> list[dict]:
    axes = {"model": grid.get("model", models), "dataset": grid.get("dataset", datasets),
            **{k: v for k, v in grid.items() if k not in ("model", "dataset", "include", "exclude")}}
    combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    combos = [c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in grid.get("exclude", []))]
    originals = [dict(c) for c in combos]
    extra = []
    for entry in grid.get("include", []):
        hits = [i for i, o in enumerate(originals) if all(o[k] == v for k, v in entry.items() if k in axes)]
        for i in hits:
            combos[i].update(entry)
        if not hits:
            extra.append({"model": models[0], "dataset": datasets[0], **entry})
    return combos + extra


@st.composite
def grids(draw):
    models = draw(st.lists(st.sampled_from(["m1", "m2", "m3"]), min_size=1, max_size=2, unique=True))
    datasets = draw(st.lists(st.sampled_from(["d1", "d2"]), min_size=1, max_size=2, unique=True))
    grid: dict = {}
    for key in draw(st.lists(st.sampled_from(["lr", "lora_rank", "seed"]), max_size=3, unique=True)):
        pool = {"lr": [1e-5, 1e-4, 3e-4, 1e-3], "lora_rank": [4, 8, 16, 32], "seed": [0, 1, 2]}[key]
        grid[key] = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    axes = {"model": models, "dataset": datasets, **grid}
    if draw(st.booleans()):
        grid["exclude"] = [
            {k: draw(st.sampled_from(axes[k])) for k in draw(st.lists(st.sampled_from(list(axes)), min_size=1,
                                                                         max_size=2, unique=True))}
            for _ in range(draw(st.integers(0, 2)))]
    includes = []
    for _ in range(draw(st.integers(0, 3))):
        entry = {}
        for k in draw(st.lists(st.sampled_from(list(axes)), max_size=2, unique=True)):
            entry[k] = draw(st.sampled_from(axes[k] + ([64] if k == "lora_rank" else [])))
        entry[draw(st.sampled_from(["warmup_steps", "weight_decay"]))] = draw(st.sampled_from([0, 10]))
        # new runs must say which model and dataset (the first: the reference's choice)
        entry.setdefault("model", models[0]) if len(models) > 1 else None
        entry.setdefault("dataset", datasets[0]) if len(datasets) > 1 else None
        if entry not in includes:
            includes.append(entry)
    if includes:
        grid["include"] = includes
    return grid, models, datasets


@FAST
@given(grids())
def test_expansion_matches_the_rules(case):
    grid, models, datasets = case
    runs, problems = expand(grid, models, datasets)
    ref = reference(grid, models, datasets)
    if problems:  # only ever a duplicate: two includes adding the same new run
        assert all("both be named" in p.message for _, p in problems)
        assert len(as_set(ref)) < len(ref)
        return
    assert as_set(points(runs)) == as_set(ref)
    assert len({r.name for r in runs}) == len(runs)


@FAST
@given(grids())
def test_run_count_is_product_minus_excluded_plus_unmatched_includes(case):
    grid, models, datasets = case
    runs, problems = expand(grid, models, datasets)
    if problems:
        return
    axes = {"model": models, "dataset": datasets,
            **{k: v for k, v in grid.items() if k not in ("include", "exclude")}}
    product = list(itertools.product(*axes.values()))
    combos = [dict(zip(axes, p)) for p in product]
    excluded = [c for c in combos if any(all(c[k] == v for k, v in e.items()) for e in grid.get("exclude", []))]
    kept = [c for c in combos if c not in excluded]
    unmatched = [e for e in grid.get("include", [])
                 if not any(all(c[k] == v for k, v in e.items() if k in axes) for c in kept)]
    assert len(runs) == len(product) - len(excluded) + len(unmatched)


@FAST
@given(grids(), st.randoms(use_true_random=False))
def test_names_are_stable_under_reordering(case, rnd: random.Random):
    grid, models, datasets = case
    runs, problems = expand(grid, models, datasets)
    keys = list(grid)
    rnd.shuffle(keys)
    shuffled = {}
    for k in keys:
        v = grid[k]
        if k in ("include", "exclude"):
            v = [dict(rnd.sample(list(e.items()), len(e))) for e in v]  # key order inside entries
        else:
            v = rnd.sample(v, len(v))
        shuffled[k] = v
    runs2, problems2 = expand(shuffled, rnd.sample(models, len(models)), rnd.sample(datasets, len(datasets)))
    assert bool(problems) == bool(problems2)
    assert {r.name: r.point for r in runs} == {r.name: r.point for r in runs2}


@FAST
@given(grids())
def test_names_survive_unrelated_edits(case):
    """Adding a grid value, a model or a dataset keeps every existing run's name."""
    grid, models, datasets = case
    runs, problems = expand(grid, models, datasets)
    if problems or "include" in grid:
        return
    wider = dict(grid)
    wider["seed"] = [*grid.get("seed", []), 99] if "seed" in grid else None
    if wider["seed"] is None:
        del wider["seed"]
    runs2, _ = expand(wider, [*models, "m-new"], [*datasets, "d-new"])
    assert {r.name for r in runs} <= {r.name for r in runs2}
