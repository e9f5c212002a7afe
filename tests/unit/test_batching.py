"""make_batches: which nodes share one sbatch call (job arrays), and how they wait for each other."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cruijff.compiler.batching import Batch, Ref, header_shape, make_batches, parse_task_ranges, task_ranges
from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, PREPARE, Node, Plan, Resources


def make_grid(runs: int = 3, *, epochs: int = 1, tasks: int = 2, base: int = 1,
              gpus=lambda r: 1) -> Plan:
    """finetune/r<i> -> eval/r<i>/epoch_<e>/t<j>; base_eval/m/t<j>. In memory only."""
    nodes = []
    for r in range(runs):
        ft = Node(f"finetune/r{r}", FINETUNE, (), Resources(gpus=gpus(r)), f"h-ft-{r}", {"run": f"r{r}"})
        nodes.append(ft)
        for e in range(epochs):
            for t in range(tasks):
                nodes.append(Node(f"eval/r{r}/epoch_{e}/t{t}", EVAL, (ft.id,), Resources(gpus=1),
                                  f"h-ev-{r}-{e}-{t}", {"run": f"r{r}", "epoch": e, "task": f"t{t}"}))
    for b in range(base):
        nodes.append(Node(f"base_eval/m/t{b}", BASE_EVAL, (), Resources(gpus=1), f"h-base-{b}", {"task": f"t{b}"}))
    return Plan("exp", "/plans/exp", "/plans/exp.yaml", "slurm", 1, {}, tuple(nodes))


def by_resources(node: Node):
    return node.resources


def batches_of(plan: Plan, *, size: int = 1001, to_submit=None, live=None, max_concurrent=None) -> list[Batch]:
    ids = [n.id for n in plan.nodes] if to_submit is None else to_submit
    return make_batches(plan, ids, live or {}, by_resources, max_array_size=size, max_concurrent=max_concurrent)


def placement(batches: list[Batch]) -> dict[str, tuple[int, int | None]]:
    """node id -> (batch index, task id or None)."""
    out = {}
    for b in batches:
        for i, node in enumerate(b.nodes):
            out[node.id] = (b.index, b.tasks[i] if b.is_array else None)
    return out


def waits_for(batch: Batch, task: int | None) -> set:
    """What one member of a batch waits for: Ref(batch, task) / Ref(batch) / a live job id."""
    deps = set(batch.after_ok)
    corr = batch.after_corr
    if corr is not None:
        deps.add(Ref(corr.batch, task) if isinstance(corr, Ref) else f"{corr}_{task}")
    return deps


def expected_waits(plan: Plan, node_id: str, placed: dict, live: dict[str, str]) -> set:
    out = set()
    for p in plan.node(node_id).parents:
        if p in placed:
            out.add(Ref(*placed[p]))
        elif p in live:
            out.add(live[p])
    return out


# --- properties over random graphs -----------------------------------------------------------

KINDS = (PREPARE, FINETUNE, EVAL, BASE_EVAL)


def _fates(draw, plan: Plan) -> tuple[list[str], dict[str, str]]:
    """Each node is submitted now, done, or live from an earlier apply: a plain job or an array task."""
    fate = draw(st.lists(st.sampled_from(["submit", "submit", "submit", "done", "job", "task"]),
                         min_size=len(plan.nodes), max_size=len(plan.nodes)))
    to_submit = [n.id for n, f in zip(plan.nodes, fate) if f == "submit"]
    live = {}
    for i, (node, f) in enumerate(zip(plan.nodes, fate)):
        if f == "job":
            live[node.id] = str(100 + i)
        elif f == "task":
            live[node.id] = f"70_{i}"
    return to_submit, live


@st.composite
def grids(draw):
    """An experiment grid (runs of mixed resources) plus a few nodes joining several others."""
    runs = draw(st.integers(1, 8))
    gpus = draw(st.lists(st.integers(1, 2), min_size=runs, max_size=runs))
    plan = make_grid(runs, epochs=draw(st.integers(1, 2)), tasks=draw(st.integers(0, 3)),
                     base=draw(st.integers(0, 2)), gpus=lambda r: gpus[r])
    nodes = list(plan.nodes)
    for j in range(draw(st.integers(0, 3))):
        parents = draw(st.sets(st.sampled_from([n.id for n in nodes]), min_size=1, max_size=3))
        nodes.append(Node(f"join/{j}", EVAL, tuple(sorted(parents)), Resources(gpus=1), f"h-join-{j}"))
    return Plan(plan.experiment, plan.output_dir, plan.manifest, "slurm", 1, {}, tuple(nodes))


@st.composite
def dags(draw):
    """Any DAG of nodes of any kind."""
    n = draw(st.integers(1, 30))
    nodes = []
    for i in range(n):
        parents = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        kind = draw(st.sampled_from(KINDS))
        gpus = draw(st.integers(0, 1))
        nodes.append(Node(f"n{i}", kind, tuple(f"n{p}" for p in parents), Resources(gpus=gpus), f"h{i}"))
    return Plan("exp", "/plans/exp", "/plans/exp.yaml", "slurm", 1, {}, tuple(nodes))


@st.composite
def scenarios(draw):
    plan = draw(st.one_of(grids(), dags()))
    to_submit, live = _fates(draw, plan)
    size = draw(st.sampled_from([0, 1, 2, 3, 5, 1001]))
    limits = draw(st.dictionaries(st.sampled_from(KINDS), st.integers(1, 9), max_size=2))
    return plan, to_submit, live, size, limits


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_every_node_to_submit_is_in_exactly_one_batch(case):
    plan, to_submit, live, size, _ = case
    members = [n.id for b in batches_of(plan, size=size, to_submit=to_submit, live=live) for n in b.nodes]
    assert sorted(members) == sorted(to_submit)


@PROPERTY
@given(scenarios())
def test_parents_are_submitted_in_earlier_batches(case):
    plan, to_submit, live, size, _ = case
    batches = batches_of(plan, size=size, to_submit=to_submit, live=live)
    assert [b.index for b in batches] == list(range(len(batches)))
    placed = placement(batches)
    for b in batches:
        for node in b.nodes:
            assert all(placed[p][0] < b.index for p in node.parents if p in placed)
        refs = [d for d in (*b.after_ok, b.after_corr) if isinstance(d, Ref)]
        assert all(r.batch < b.index for r in refs)


@PROPERTY
@given(scenarios())
def test_array_task_ids_are_unique_and_below_max_array_size(case):
    plan, to_submit, live, size, _ = case
    for b in batches_of(plan, size=size, to_submit=to_submit, live=live):
        if b.is_array:
            assert len(b.tasks) == len(b.nodes) >= 2
            assert len(set(b.tasks)) == len(b.tasks)
            assert all(0 <= t < size for t in b.tasks)


@PROPERTY
@given(scenarios())
def test_nodes_of_one_array_share_kind_and_shape(case):
    plan, to_submit, live, size, _ = case
    for b in batches_of(plan, size=size, to_submit=to_submit, live=live):
        assert {n.kind for n in b.nodes} == {b.kind}
        assert len({by_resources(n) for n in b.nodes}) == 1


@PROPERTY
@given(scenarios())
def test_each_node_waits_for_exactly_its_live_or_submitted_parents(case):
    """A task waits for its parent's one task (aftercorr or `<id>_<t>`), never a whole array."""
    plan, to_submit, live, size, _ = case
    batches = batches_of(plan, size=size, to_submit=to_submit, live=live)
    placed = placement(batches)
    for b in batches:
        for i, node in enumerate(b.nodes):
            task = b.tasks[i] if b.is_array else None
            assert waits_for(b, task) == expected_waits(plan, node.id, placed, live), node.id


@PROPERTY
@given(scenarios())
def test_batch_names_are_unique_and_stable(case):
    plan, to_submit, live, size, limits = case
    first = batches_of(plan, size=size, to_submit=to_submit, live=live, max_concurrent=limits)
    again = batches_of(plan, size=size, to_submit=to_submit, live=live, max_concurrent=limits)
    assert first == again
    names = [b.name for b in first]
    assert len(set(names)) == len(names)


@PROPERTY
@given(scenarios())
def test_max_concurrent_is_shared_among_a_stages_arrays(case):
    plan, to_submit, live, size, limits = case
    batches = batches_of(plan, size=size, to_submit=to_submit, live=live, max_concurrent=limits)
    for b in batches:
        arrays = sum(1 for o in batches if o.is_array and o.kind == b.kind)
        want = max(1, limits[b.kind] // arrays) if b.is_array and b.kind in limits else None
        assert b.throttle == want


# --- the experiment grid ---------------------------------------------------------------------


def test_a_stage_of_uniform_shape_is_one_array_and_evals_wait_with_aftercorr():
    plan = make_grid(runs=4, tasks=1, base=0)
    ft, ev = batches_of(plan)
    assert (ft.kind, ft.tasks, ft.after_ok, ft.after_corr) == (FINETUNE, (0, 1, 2, 3), (), None)
    assert (ev.kind, ev.after_ok, ev.after_corr) == (EVAL, (), Ref(0))
    for node, task in zip(ev.nodes, ev.tasks):  # eval i waits for fine-tune i only
        assert ft.nodes[task].id == node.parents[0]


def test_several_children_of_one_parent_task_land_in_different_arrays():
    plan = make_grid(runs=4, epochs=2, tasks=3, base=0)
    ft, *evals = batches_of(plan)
    assert len(evals) == 2 * 3
    for ev in evals:
        assert ev.after_corr == Ref(0) and ev.tasks == (0, 1, 2, 3)
        assert len({n.attrs["run"] for n in ev.nodes}) == 4  # one eval per run in each array
    assert sorted(n.id for ev in evals for n in ev.nodes) == sorted(n.id for n in plan.nodes if n.kind == EVAL)


def test_different_resources_make_different_arrays():
    plan = make_grid(runs=6, tasks=0, base=0, gpus=lambda r: 1 if r % 2 else 4)
    batches = batches_of(plan)
    assert [[n.id for n in b.nodes] for b in batches] == [
        ["finetune/r0", "finetune/r2", "finetune/r4"], ["finetune/r1", "finetune/r3", "finetune/r5"]]


def test_a_group_of_one_is_a_plain_job():
    plan = make_grid(runs=3, tasks=1, base=1)
    base = [b for b in batches_of(plan) if b.kind == BASE_EVAL]
    assert len(base) == 1 and not base[0].is_array and base[0].name == "base_eval/m/t0"


def test_without_arrays_every_node_is_a_plain_job_in_order_with_afterok_refs():
    plan = make_grid(runs=2, tasks=2, base=1)
    ids = [n.id for n in plan.nodes]
    batches = batches_of(plan, size=0, max_concurrent={"eval": 2})
    assert [b.nodes[0].id for b in batches] == ids
    assert all(not b.is_array and b.after_corr is None and b.throttle is None for b in batches)
    assert batches[ids.index("eval/r1/epoch_0/t1")].after_ok == (Ref(ids.index("finetune/r1")),)
    assert batches[ids.index("finetune/r1")].after_ok == ()


def test_without_arrays_live_parents_are_plain_job_ids():
    plan = make_grid(runs=2, tasks=1, base=0)
    batches = batches_of(plan, size=0, to_submit=["eval/r0/epoch_0/t0", "eval/r1/epoch_0/t0"],
                         live={"finetune/r0": "123", "finetune/r1": "77_3"})
    assert [b.after_ok for b in batches] == [("123",), ("77_3",)]


def test_live_parents_from_earlier_applies():
    """`123` is waited for with afterok; task `77_3` gives task id 3 and aftercorr on array 77."""
    plan = make_grid(runs=4, tasks=1, base=0)
    evals = [f"eval/r{r}/epoch_0/t0" for r in range(4)]
    live = {"finetune/r0": "123", "finetune/r1": "77_3", "finetune/r2": "77_4"}  # r3: done
    batches = batches_of(plan, to_submit=evals, live=live)
    by_node = {n.id: b for b in batches for n in b.nodes}
    plain = by_node["eval/r0/epoch_0/t0"]
    assert (plain.is_array, plain.after_ok, plain.after_corr) == (False, ("123",), None)
    array = by_node["eval/r1/epoch_0/t0"]
    assert array is by_node["eval/r2/epoch_0/t0"]
    assert (array.tasks, array.after_ok, array.after_corr) == ((3, 4), (), "77")
    done = by_node["eval/r3/epoch_0/t0"]  # a finished parent is not waited for
    assert (done.after_ok, done.after_corr) == ((), None)


def test_a_live_parent_task_beyond_max_array_size_gives_a_plain_job_waiting_on_that_task():
    plan = make_grid(runs=2, tasks=1, base=0)
    live = {"finetune/r0": "77_1", "finetune/r1": "77_9"}
    batches = batches_of(plan, size=5, to_submit=["eval/r0/epoch_0/t0", "eval/r1/epoch_0/t0"], live=live)
    assert [(b.is_array, b.after_ok, b.after_corr) for b in batches] == [
        (False, ("77_1",), None), (False, ("77_9",), None)]


@pytest.mark.parametrize("runs", [50, 1000])
def test_number_of_batches_does_not_grow_with_the_number_of_runs(runs):
    plan = make_grid(runs=runs, tasks=4, base=0)
    batches = batches_of(plan, size=1001)
    assert len(batches) == 1 + 4
    assert sum(len(b.nodes) for b in batches) == runs * 5


def test_a_stage_larger_than_max_array_size_is_split_and_children_stay_aligned():
    plan = make_grid(runs=8, tasks=2, base=0)
    batches = batches_of(plan, size=3)
    fts = [b for b in batches if b.kind == FINETUNE]
    assert len(fts) == math.ceil(8 / 3) and [len(b.nodes) for b in fts] == [3, 3, 2]
    evals = [b for b in batches if b.kind == EVAL]
    assert len(evals) == 2 * len(fts)
    for ev in evals:
        parent = batches[ev.after_corr.batch]
        assert parent.kind == FINETUNE and ev.tasks == parent.tasks
        for node, task in zip(ev.nodes, ev.tasks):
            assert node.parents == (parent.nodes[parent.tasks.index(task)].id,)


def test_throttle_is_shared_among_the_arrays_of_a_stage():
    plan = make_grid(runs=8, tasks=2, base=1)
    batches = batches_of(plan, size=3, max_concurrent={"finetune": 7, "eval": 12, "base_eval": 3})
    assert [b.throttle for b in batches if b.kind == FINETUNE] == [7 // 3] * 3
    assert [b.throttle for b in batches if b.kind == EVAL] == [12 // 6] * 6
    assert [b.throttle for b in batches if b.kind == BASE_EVAL] == [None]  # a plain job: not throttled


def test_throttle_is_at_least_one():
    batches = batches_of(make_grid(runs=8, tasks=0, base=0), size=3, max_concurrent={"finetune": 2})
    assert [b.throttle for b in batches] == [1, 1, 1]


def test_array_name_is_kind_and_digest_of_its_members():
    plan = make_grid(runs=3, tasks=0, base=0)
    (ft,) = batches_of(plan)
    assert ft.name == f"array/finetune/{ft.digest}" and len(ft.digest) == 12
    changed = Plan(plan.experiment, plan.output_dir, plan.manifest, plan.executor, 1, {},
                   (plan.nodes[0], plan.nodes[1], Node("finetune/r2", FINETUNE, (), Resources(gpus=1), "other")))
    (ft2,) = batches_of(changed)
    assert ft2.digest != ft.digest  # another hash is another array


# --- header_shape ----------------------------------------------------------------------------

SCRIPT = """#!/bin/bash
#SBATCH --job-name={name}
#SBATCH -J {name}
#SBATCH --output={dir}/job.out
#SBATCH -o {dir}/job.out
#SBATCH --error={dir}/job.err
#SBATCH --chdir={dir}
#SBATCH -D {dir}
#SBATCH --comment=x
#SBATCH --gres=gpu:1
#SBATCH --time=01:00:00

# a comment between #SBATCH lines
#SBATCH --mem=8G
set -eo pipefail
#SBATCH --partition=ignored-after-the-first-command
cd {dir}
"""


def test_header_shape_ignores_per_node_options_and_stops_at_the_first_command():
    text = SCRIPT.format(name="finetune/r0", dir="/out/finetune/r0")
    assert header_shape(text) == ("#SBATCH --gres=gpu:1", "#SBATCH --time=01:00:00", "#SBATCH --mem=8G")


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20),
       st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20))
def test_header_shape_is_the_same_for_any_per_node_values(name, directory):
    base = header_shape(SCRIPT.format(name="a", dir="/a"))
    assert header_shape(SCRIPT.format(name=name, dir=directory)) == base


@pytest.mark.parametrize("pad", [0, 1, 7, 4000, 4090, 4100, 9000])
def test_a_header_longer_than_the_part_read_first_gives_the_whole_scripts_shape(pad):
    """header_shape splits only the top of a script; a header (or a line) across that cut is read whole."""
    from cruijff.compiler import batching

    text = "#!/bin/bash\n# " + "x" * pad + "\n" + SCRIPT.format(name="n", dir="/d").split("\n", 1)[1] + "echo done\n" * 500
    expected = ("#SBATCH --gres=gpu:1", "#SBATCH --time=01:00:00", "#SBATCH --mem=8G")
    assert header_shape(text) == expected
    assert batching._header_shape(text.splitlines()[1:])[0] == expected


def test_rendered_job_scripts_of_one_stage_share_a_shape():
    from cruijff.compiler.render.sbatch import job_script

    def rendered(node_id: str, gpus: int) -> str:
        return job_script(title=node_id, job_name=f"exp:{node_id}", node_dir=f"/out/my exp/{node_id}",
                          resources=Resources(gpus=gpus, cpus=4, mem="32G", time="02:00:00"),
                          cluster={"partition": "gpu", "account": "proj"}, commands=[["echo", node_id]])

    r0, r1 = header_shape(rendered("finetune/r0", 1)), header_shape(rendered("finetune/r1", 1))
    assert r0 == r1 and "#SBATCH --gres=gpu:1" in r0 and "#SBATCH --partition=gpu" in r0
    assert header_shape(rendered("finetune/r2", 2)) != r0


def test_header_shape_differs_when_resources_differ():
    a = SCRIPT.format(name="a", dir="/a")
    assert header_shape(a) != header_shape(a.replace("gpu:1", "gpu:2"))


# --- task ranges ------------------------------------------------------------------------------


@given(st.lists(st.integers(0, 5000), max_size=60))
def test_task_ranges_round_trip(tasks):
    assert parse_task_ranges(task_ranges(tasks)) == sorted(set(tasks))


def test_task_ranges_is_compact():
    assert task_ranges((0, 1, 2, 5, 7, 8)) == "0-2,5,7-8"
    assert task_ranges([3]) == "3"
    assert task_ranges([]) == ""


@pytest.mark.parametrize("text, tasks", [
    ("2-5%2", [2, 3, 4, 5]),
    ("[0-3,7]", [0, 1, 2, 3, 7]),
    ("0-10:2", [0, 2, 4, 6, 8, 10]),
    ("4", [4]),
    ("[1,3-4]%10", [1, 3, 4]),
    ("", []),
])
def test_parse_task_ranges_reads_slurm_task_strings(text, tasks):
    assert parse_task_ranges(text) == tasks
