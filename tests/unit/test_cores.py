"""The first plan of a big grid is spread over processes (cruijff.cores): what it renders and
writes must be byte for byte what one process gives, and a failure in any process must end as it
does in one: the same error, nothing half-written."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cruijff import cores
from cruijff.compiler import pipeline, prerender, renderer
from cruijff.compiler import write as write_mod
from cruijff.compiler.render.sbatch import UnsafeValue
from cruijff.compiler.write import write_plan
from cruijff.errors import ManifestError, StateError
from cruijff.store.keys import SETTINGS_FILE

REPO = Path(__file__).resolve().parents[2]


def test_results_come_back_in_the_items_order_from_several_processes(monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 3)
    parent = os.getpid()
    out = cores.on_cores(lambda share: [(x * x, os.getpid()) for x in share], list(range(10)), min_items=1)
    assert [v for v, _ in out] == [x * x for x in range(10)]
    assert len({pid for _, pid in out}) == 3 and parent in {pid for _, pid in out}, "not spread over 3 processes"


def test_below_the_threshold_or_on_one_core_the_caller_does_the_work(monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 2)
    assert cores.on_cores(lambda share: list(share), [1, 2, 3], min_items=4) is None
    monkeypatch.setattr(cores, "workers", lambda: 1)
    assert cores.on_cores(lambda share: list(share), list(range(100)), min_items=1) is None


def test_an_error_in_a_child_is_raised_in_the_parent_after_every_child_ended(monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 2)

    def work(share):
        if 1 in share:  # the child's share: items 1, 3, 5
            raise OSError(28, "No space left on device", "/plan/x")
        return list(share)

    with pytest.raises(OSError) as info:
        cores.on_cores(work, list(range(6)), min_items=1)
    assert (info.value.errno, info.value.filename) == (28, "/plan/x")


def test_work_ahead_comes_back_as_it_returned_from_a_child_that_is_waited_for(monkeypatch, tmp_path):
    monkeypatch.setattr(cores, "workers", lambda: 2)
    (tmp_path / "a").write_text("xyz")
    big = {f"node/{i}": i for i in range(50_000)}  # more than a pipe holds at once
    seen: list[int] = []
    child = cores.ahead(lambda: ({p.name: p.stat().st_size for p in tmp_path.iterdir()}, os.getpid(),
                                 big, seen.append(1) or len(seen)))
    assert child.result() == ({"a": 3}, child.pid, big, 1)
    assert child.pid != os.getpid() and seen == []  # it ran in the child, and what it changed stayed there
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)


def test_work_ahead_that_raises_answers_none_and_on_one_core_there_is_no_child(monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 2)

    def fails():
        raise OSError("gone")

    assert cores.ahead(fails).result() is None  # the caller does the work itself
    monkeypatch.setattr(cores, "workers", lambda: 1)
    assert cores.ahead(lambda: 1) is None


def outcome(compiled) -> tuple:
    """Files, node hashes, store keys, and store-settings.json as written (from each node's settings
    text: test_store checks the joining against the whole document)."""
    written = pipeline.with_store_keys(compiled)[SETTINGS_FILE]
    return (compiled.files, [(n.id, n.hash, n.inputs) for n in compiled.plan.nodes],
            json.dumps(compiled.store, sort_keys=True, default=str), written, compiled.shapes, compiled.rendered)


def forked(monkeypatch, on: bool) -> None:
    monkeypatch.setattr(cores, "workers", lambda: 2)
    monkeypatch.setattr(prerender, "RENDER_AHEAD_FROM", 1 if on else 10**9)
    monkeypatch.setattr(write_mod, "FORK_FROM", 1 if on else 10**9)


@pytest.mark.parametrize("name", ["tiny", "twins", "capitalization", "smollm2", "tiny_prompts"])
def test_rendering_in_processes_equals_rendering_in_one(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    path = REPO / "experiments" / f"{name}.yaml"
    forked(monkeypatch, False)
    # reuse: as `plan` compiles (nothing on disk to keep), with the job scripts' header shapes
    one = pipeline.compile_manifest(path, out=str(tmp_path / "plan"), check_paths=False, reuse=True)
    forked(monkeypatch, True)
    rendered = []
    real = renderer.Renderer.render
    monkeypatch.setattr(renderer.Renderer, "render", lambda self, spec: rendered.append(spec.id) or real(self, spec))
    many = pipeline.compile_manifest(path, out=str(tmp_path / "plan"), check_paths=False, reuse=True)
    assert outcome(many) == outcome(one) and len(one.shapes) == sum(n.kind != "prepare" for n in one.plan.nodes)
    assert 0 < len(rendered) < len(one.plan.nodes), "the parent rendered every node itself"


def test_a_node_that_does_not_render_is_reported_as_in_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    path = REPO / "experiments" / "tiny.yaml"
    real = renderer.Renderer.render
    victim = pipeline.compile_manifest(path, out=str(tmp_path / "plan"), check_paths=False).plan.nodes[-1].id

    def render(self, spec):
        if spec.id == victim:
            raise UnsafeValue("partition 'a b' cannot go into a job script", ("cluster", "partition"))
        return real(self, spec)

    monkeypatch.setattr(renderer.Renderer, "render", render)
    errors = []
    for on in (False, True):
        forked(monkeypatch, on)
        with pytest.raises(ManifestError) as info:
            pipeline.compile_manifest(path, out=str(tmp_path / "plan"), check_paths=False)
        errors.append([p.as_dict() for p in info.value.problems])
    assert errors[0] == errors[1] and "partition" in errors[0][0]["message"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != ".cruijff.lock"}


def test_files_written_by_several_processes_equal_one_writer_and_a_failure_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    out = tmp_path / "plan"
    compiled = pipeline.compile_manifest(REPO / "experiments" / "tiny_prompts.yaml", out=str(out), check_paths=False)
    forked(monkeypatch, False)
    write_plan(compiled.plan, compiled.files)
    expected = tree(out)
    shutil.rmtree(out)

    forked(monkeypatch, True)
    real = write_mod._write_new
    last = sorted(compiled.files)[-1]

    def full_disk(p, data, executable):  # one file, in whichever process writes it
        if p.endswith(last):
            raise OSError(28, "No space left on device", p)
        return real(p, data, executable)

    monkeypatch.setattr(write_mod, "_write_new", full_disk)
    with pytest.raises(StateError) as info:
        write_plan(compiled.plan, compiled.files)
    assert "No space left on device" in str(info.value)
    assert tree(out) == {}, "a failed write left files behind"

    here = []  # files this process wrote: a child's appends go to its own copy of the list
    monkeypatch.setattr(write_mod, "_write_new", lambda p, data, executable: here.append(p) or real(p, data, executable))
    write_plan(compiled.plan, compiled.files)
    assert tree(out) == expected
    assert 0 < len(here) < len(expected) - 1, "one process wrote every file"
    assert os.access(out / compiled.plan.nodes[0].script, os.X_OK)


def test_a_share_no_process_could_be_forked_for_is_worked_here(monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 3)
    real, calls = os.fork, []

    def fork():
        calls.append(1)
        if len(calls) == 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real()

    monkeypatch.setattr(os, "fork", fork)
    parent = os.getpid()
    out = cores.on_cores(lambda share: [(x, os.getpid()) for x in share], list(range(9)), min_items=1)
    assert [x for x, _ in out] == list(range(9))
    assert [pid == parent for _, pid in out] == [True, True, False] * 3  # shares 0 and 1 here, 2 forked


def test_the_share_of_a_process_killed_before_it_answered_is_worked_here(monkeypatch):
    monkeypatch.setattr(cores, "workers", lambda: 2)
    parent = os.getpid()

    def work(share):
        if os.getpid() != parent:
            os.kill(os.getpid(), 9)  # as the OOM killer would
        return [(x, os.getpid()) for x in share]

    out = cores.on_cores(work, list(range(6)), min_items=1)
    assert out == [(x, parent) for x in range(6)]

