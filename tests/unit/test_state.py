"""state.db: one committed row per submission step; the lock refuses a second apply."""

from __future__ import annotations

import sqlite3

import pytest

from cruijff.errors import StateError
from cruijff.run.state import State, apply_lock


def test_intent_then_job_id_and_current_is_newest_row(tmp_path):
    with State(tmp_path) as st:
        row = st.record_intent("finetune/a", "h1", "slurm")
        assert st.current()["finetune/a"].job_id is None
        st.record_job(row, "42")
        row2 = st.record_intent("finetune/a", "h2", "slurm")
        st.record_job(row2, "43")
        cur = st.current()["finetune/a"]
        assert (cur.job_id, cur.hash) == ("43", "h2")
        assert st.known_job_ids() == {"42", "43"}


def test_each_step_is_committed_at_once(tmp_path):
    """Another connection (a later apply after SIGKILL) sees the intent without any close()."""
    st = State(tmp_path)
    st.record_intent("eval/a/epoch_0/t", "h", "slurm")
    other = sqlite3.connect(tmp_path / "state.db")
    assert other.execute("SELECT COUNT(*) FROM submissions WHERE job_id IS NULL").fetchone()[0] == 1


def test_final_state_adopt_and_forget(tmp_path):
    with State(tmp_path) as st:
        row = st.record_intent("n", "h", "local")
        st.record_pid(row, 1234)
        st.record_job(row, "local-x-1")
        st.record_final(row, "failed", 1, "exit 1")
        cur = st.current()["n"]
        assert (cur.final_state, cur.exit_code, cur.pid) == ("failed", 1, None)
        intent = st.record_intent("m", "h", "slurm")
        st.forget_intent(intent)
        assert "m" not in st.current()
        st.record_adopted("m", "h", "slurm", "77")
        assert st.current()["m"].job_id == "77"


def test_missing_state_reads_as_empty_without_creating_it(tmp_path):
    with State(tmp_path, create=False) as st:
        assert st.current() == {} and st.all() == []
    assert not (tmp_path / "state.db").exists()


def test_corrupt_state_is_a_state_error(tmp_path):
    (tmp_path / "state.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StateError, match="cannot open the state database"):
        State(tmp_path)


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with apply_lock(tmp_path):
        with pytest.raises(StateError, match=r"another `cruijff apply` or `cancel` is running .*pid \d+"):
            with apply_lock(tmp_path):
                pass
    with apply_lock(tmp_path):
        pass
