"""Read-only work in a forked child (cruijff.compiler.ahead): its result comes back as the work
returns it, a failed child is None (the caller then does the work), the child is always waited
for, and there is no child where a fork is not safe or would not pay."""

from __future__ import annotations

import os
import threading

import pytest

from cruijff.compiler import ahead as ahead_module
from cruijff.compiler.ahead import ahead


@pytest.fixture
def forks(monkeypatch):
    monkeypatch.setattr(ahead_module, "can_fork", lambda: True)  # whatever pytest-xdist's thread


def test_the_childs_result_is_the_works_result_and_the_child_is_waited_for(forks, tmp_path):
    (tmp_path / "a").write_text("x" * 3)
    big = {f"node/{i}": i for i in range(50_000)}  # more than a pipe holds at once
    child = ahead(lambda: ({p.name: p.stat().st_size for p in tmp_path.iterdir()}, os.getpid(), big))
    sizes, pid, echoed = child.result()
    assert sizes == {"a": 3} and echoed == big
    assert pid == child.pid != os.getpid()  # it ran in the child
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)


def test_a_child_whose_work_raises_answers_none(forks):
    def fails():
        raise OSError("gone")

    assert ahead(fails).result() is None


def test_what_a_child_changes_stays_in_the_child(forks):
    seen = []
    assert ahead(lambda: seen.append(1) or len(seen)).result() == 1
    assert seen == []


def test_no_child_without_a_second_core_or_beside_another_thread(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert ahead_module.can_fork()
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert not ahead_module.can_fork()
    assert ahead(lambda: 1) is None
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not ahead_module.can_fork()
