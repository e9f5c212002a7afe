"""Submission state: `<output_dir>/state.db` (SQLite) and the apply lock.

Why SQLite: each submission is recorded in its own committed transaction, so a crash, Ctrl-C or
SIGKILL at any point leaves the database describing what may exist in the scheduler. The protocol
(apply.py) is: commit an *intent* row before calling sbatch, commit the job id right after. An
intent without a job id means "sbatch may or may not have happened"; the next apply settles it by
looking for the job in the scheduler (job name + hash) and in the node's record.jsonl.

One row per submission attempt; a node's current submission is its newest row.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from cruijff.errors import StateError

STATE_FILE = "state.db"
SCHEMA_VERSION = 2  # 2: batch and task columns (job arrays)
REFUSED = "refused"  # final_state of an intent the scheduler refused: read as "not submitted"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id     TEXT NOT NULL,
    hash        TEXT NOT NULL,
    executor    TEXT NOT NULL,
    job_id      TEXT,             -- NULL: intent recorded, sbatch outcome unknown
    created     REAL NOT NULL,    -- intent time
    submitted   REAL,             -- job id known
    final_state TEXT,             -- completed | failed | cancelled | refused, once apply knows it
    exit_code   INTEGER,
    reason      TEXT,             -- why cancelled/failed (e.g. blocked by <node id>)
    pid         INTEGER,          -- local executor: the process group of the running job
    batch       TEXT,             -- job array: its name (array/<kind>/<digest>), for adoption
    task        INTEGER           -- job array: this node's task id
);
CREATE INDEX IF NOT EXISTS submissions_node ON submissions (node_id, id);
"""


@dataclass(frozen=True)
class Submission:
    id: int
    node_id: str
    hash: str
    executor: str
    job_id: str | None
    created: float
    submitted: float | None
    final_state: str | None
    exit_code: int | None
    reason: str | None
    pid: int | None
    batch: str | None = None
    task: int | None = None


class State:
    """The state database of one plan directory."""

    def __init__(self, output_dir: str | Path, *, create: bool = True):
        self.path = Path(output_dir) / STATE_FILE
        if not create and not self.path.exists():
            self.conn = None
            return
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(_SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) == 1:
                self._upgrade_from_1()
            elif int(row[0]) != SCHEMA_VERSION:
                raise StateError(f"{self.path}: state schema version {row[0]} is not supported "
                                 f"(this cruijff reads {SCHEMA_VERSION})")
        except sqlite3.DatabaseError as e:
            raise StateError(f"{self.path}: cannot open the state database ({e})",
                             hint="it may be corrupt; move it aside and re-run `cruijff apply`, which "
                                  "reconciles with the scheduler") from None

    def _upgrade_from_1(self) -> None:
        """Version 1 had no array columns; its rows are all plain jobs."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row and int(row[0]) != 1:
                return  # another process upgraded it while we waited for the lock
            self.conn.execute("ALTER TABLE submissions ADD COLUMN batch TEXT")
            self.conn.execute("ALTER TABLE submissions ADD COLUMN task INTEGER")
            self.conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> "State":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- reads -----------------------------------------------------------------------------
    def current(self) -> dict[str, Submission]:
        """Each node's newest submission."""
        if self.conn is None:
            return {}
        rows = self.conn.execute(
            "SELECT * FROM submissions WHERE id IN (SELECT MAX(id) FROM submissions GROUP BY node_id)"
        ).fetchall()
        return {r[1]: Submission(*r) for r in rows}

    def all(self) -> list[Submission]:
        if self.conn is None:
            return []
        return [Submission(*r) for r in self.conn.execute("SELECT * FROM submissions ORDER BY id")]

    def known_job_ids(self) -> set[str]:
        if self.conn is None:
            return set()
        return {r[0] for r in self.conn.execute("SELECT job_id FROM submissions WHERE job_id IS NOT NULL")}

    def executors(self) -> set[str]:
        """The executors of the nodes' current submissions (in SQL: status asks it on 5,000 rows)."""
        if self.conn is None:
            return set()
        return {r[0] for r in self.conn.execute(
            "SELECT DISTINCT executor FROM submissions WHERE id IN (SELECT MAX(id) FROM submissions GROUP BY node_id)")}

    # --- writes: each one its own committed transaction ------------------------------------
    def record_intent(self, node_id: str, node_hash: str, executor: str) -> int:
        """Before sbatch: from now on the node may exist in the scheduler."""
        cur = self.conn.execute(
            "INSERT INTO submissions (node_id, hash, executor, created) VALUES (?, ?, ?, ?)",
            (node_id, node_hash, executor, time.time()),
        )
        return int(cur.lastrowid)

    def record_array_intent(self, members: list[tuple[str, str]], executor: str, batch: str,
                            tasks: tuple[int, ...]) -> list[int]:
        """Before sbatch --array: one intent row per (node id, hash), all in one transaction."""
        now = time.time()
        rows = []
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            for (node_id, node_hash), task in zip(members, tasks):
                cur = self.conn.execute(
                    "INSERT INTO submissions (node_id, hash, executor, created, batch, task) VALUES (?, ?, ?, ?, ?, ?)",
                    (node_id, node_hash, executor, now, batch, task),
                )
                rows.append(int(cur.lastrowid))
        return rows

    def record_array_jobs(self, rows: list[int], array_id: str) -> None:
        """Right after sbatch --array returned: each row's job id is `<array id>_<task>`."""
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "UPDATE submissions SET job_id=? || '_' || task, submitted=? WHERE id=?",
                [(array_id, now, row) for row in rows],
            )

    def record_job(self, row: int, job_id: str) -> None:
        """Right after sbatch returned the job id."""
        self.conn.execute("UPDATE submissions SET job_id=?, submitted=? WHERE id=?", (job_id, time.time(), row))

    def record_adopted(self, node_id: str, node_hash: str, executor: str, job_id: str,
                       reason: str = "adopted from the scheduler") -> int:
        """A job found in the scheduler (or a record.jsonl) that state did not know."""
        now = time.time()
        cur = self.conn.execute(
            "INSERT INTO submissions (node_id, hash, executor, job_id, created, submitted, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (node_id, node_hash, executor, job_id, now, now, reason),
        )
        return int(cur.lastrowid)

    def record_refused(self, rows: list[int], message: str, phantom: str | None = None) -> None:
        """sbatch refused these intents: nothing is queued. SLURM may still keep a FAILED record of
        the refused job (`phantom`): its id is stored so that it is never adopted as this node's run."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany(
                "UPDATE submissions SET final_state=?, reason=?, "
                "job_id=CASE WHEN ? IS NULL THEN job_id WHEN task IS NULL THEN ? ELSE ? || '_' || task END "
                "WHERE id=?",
                [(REFUSED, message[:2000], phantom, phantom, phantom, r) for r in rows],
            )

    def record_final_job(self, job_id: str, final_state: str, reason: str) -> None:
        """Every unfinished row of this job id (e.g. a duplicate or a removed node's job) is final."""
        self.conn.execute("UPDATE submissions SET final_state=?, reason=?, pid=NULL "
                          "WHERE job_id=? AND final_state IS NULL", (final_state, reason, job_id))

    def record_submit_error(self, row: int | list[int], message: str) -> None:
        """sbatch failed: keep the intent (it might still have reached the controller) with why."""
        rows = row if isinstance(row, list) else [row]
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.executemany("UPDATE submissions SET reason=? WHERE id=?", [(message[:2000], r) for r in rows])

    def record_pid(self, row: int, pid: int | None) -> None:
        self.conn.execute("UPDATE submissions SET pid=? WHERE id=?", (pid, row))

    def record_final(self, row: int, final_state: str, exit_code: int | None = None,
                     reason: str | None = None) -> None:
        self.conn.execute(
            "UPDATE submissions SET final_state=?, exit_code=?, reason=COALESCE(?, reason), pid=NULL WHERE id=?",
            (final_state, exit_code, reason, row),
        )

    def forget_intent(self, row: int) -> None:
        """An intent proven never submitted (not in the scheduler, no record): drop it."""
        self.conn.execute("DELETE FROM submissions WHERE id=? AND job_id IS NULL", (row,))


def apply_lock(output_dir: str | Path, what: str = "apply"):
    """One apply (or cancel, or plan) per plan directory at a time: see cruijff/lock.py."""
    from cruijff.lock import plan_lock

    return plan_lock(output_dir, what)
