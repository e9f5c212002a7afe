"""Build a small Plan and its plan directory with trivial job scripts that follow the contract.

Each job.sbatch is rendered by cruijff's own job_script (the #SBATCH lines, the record.jsonl
start/end prelude of docs/dev/architecture.md); its command appends "<node id> start|end <time>"
to <out>/trace.log (to check order), sleeps, writes an inspect-style JSON log for evals, and
exits 0 or 1.

    plan = make_plan(tmp_path, runs=3, evals_per_run=2, base_evals=1, fail={"finetune/r1"}, sleep=0.2)
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from pathlib import Path

from cruijff.compiler.render.sbatch import job_script
from cruijff.plan import dumps
from cruijff.plan import BASE_EVAL, EVAL, FINETUNE, Node, Plan, Resources

MODEL = "tiny"


def _hash(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def script(out: Path, node: Node, *, sleep: float, exit_code: int, score: float | None, epochs: int = 1,
           cluster: dict | None = None) -> str:
    """The node's job script as cruijff renders one (cruijff.compiler.render.sbatch.job_script: the
    same #SBATCH lines, record.jsonl prelude and EXIT trap), running a stand-in job: it appends
    "<node id> start|end <time>" to <out>/trace.log, sleeps, makes the fine-tune's epoch folders
    or writes an inspect-style log for evals, and exits with exit_code."""
    trace = shlex.quote(str(out / "trace.log"))
    steps = [f'echo "{node.id} start $(date +%s.%N)" >> {trace}', f"sleep {sleep}"]
    if node.kind == FINETUNE:
        steps += [f"mkdir -p epoch_{e}/model" for e in range(epochs)]
    if score is not None and exit_code == 0:
        log = {"status": "success", "eval": {"task": node.attrs.get("task")},
               "results": {"scores": [{"name": "match", "metrics": {"accuracy": {"value": score}}}]}}
        steps += ["mkdir -p logs", f"printf '%s' {shlex.quote(json.dumps(log))} > logs/2025-01-01T00-00-00_x.json"]
    steps += [f'echo "{node.id} end $(date +%s.%N)" >> {trace}', f"exit {exit_code}"]
    return job_script(title=f"test job {node.id}", job_name=node.id, node_dir=str(out / node.id),
                      resources=node.resources, cluster=dict(cluster or {}),
                      commands=[["bash", "-c", "\n".join(steps)]])


def make_plan(
    tmp_path: str | Path,
    *,
    runs: int = 3,
    evals_per_run: int = 2,
    epochs: int = 1,
    base_evals: int = 1,
    fail: set[str] | frozenset[str] = frozenset(),
    sleep: float = 0.2,
    scores: dict[str, float] | None = None,
    experiment: str = "exp",
    version: str = "v1",
    changed: set[str] | frozenset[str] = frozenset(),
    max_parallel: int = 4,
    executor: str = "local",
    sleeps: dict[str, float] | None = None,
    cluster: dict | None = None,
) -> Plan:
    """Write plan.json and job scripts under tmp_path/<experiment>; return the Plan.

    evals_per_run tasks (t0, t1, ...) are evaluated at each of `epochs` epochs of every run
    r0, r1, ...; base_evals tasks on the base model. `changed` node ids get another hash (as a
    manifest edit would; children follow, as the compiler's hash chain does). `scores` maps
    eval node ids to the accuracy their fake inspect log reports; `sleeps` node ids to their own
    sleep; `cluster` is the plan's cluster block (e.g. max_concurrent).
    """
    out = Path(tmp_path) / experiment
    out.mkdir(parents=True, exist_ok=True)
    scores = scores or {}
    tasks = [f"t{i}" for i in range(evals_per_run)]
    specs: list[tuple[str, str, tuple[str, ...], dict]] = []
    for r in range(runs):
        run = f"r{r}"
        specs.append((f"finetune/{run}", FINETUNE, (), {"run": run, "model": MODEL}))
        for e in range(epochs):
            for t in tasks:
                specs.append((f"eval/{run}/epoch_{e}/{t}", EVAL, (f"finetune/{run}",),
                              {"run": run, "model": MODEL, "epoch": e, "task": t}))
    for b in range(base_evals):
        t = f"t{b}"
        specs.append((f"base_eval/{MODEL}/{t}", BASE_EVAL, (), {"model": MODEL, "task": t}))
    hashes: dict[str, str] = {}
    nodes = []
    for node_id, kind, parents, attrs in specs:
        salt = version + ("*" if node_id in changed else "")
        hashes[node_id] = _hash(node_id, salt, *(hashes[p] for p in parents))
        node = Node(node_id, kind, parents, Resources(cpus=1, time="00:05:00"), hashes[node_id], attrs)
        nodes.append(node)
        (out / node_id).mkdir(parents=True, exist_ok=True)
        default_score = 0.5 + 0.01 * len(nodes) if kind != FINETUNE else None
        text = script(out, node, sleep=(sleeps or {}).get(node_id, sleep), exit_code=1 if node_id in fail else 0,
                      score=scores.get(node_id, default_score), epochs=epochs, cluster=cluster)
        (out / node.script).write_text(text)
    plan = Plan(experiment=experiment, output_dir=str(out), manifest=str(out / "manifest.yaml"),
                executor=executor, max_parallel=max_parallel, cluster=dict(cluster or {}), nodes=tuple(nodes))
    (out / "plan.json").write_text(dumps(plan))
    return plan


def trace(plan: Plan) -> list[tuple[str, str, float]]:
    """(node id, start|end, time) lines the job scripts appended, in file order."""
    path = Path(plan.output_dir) / "trace.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        node_id, event, t = line.split()
        out.append((node_id, event, float(t)))
    return out


def starts(plan: Plan) -> dict[str, int]:
    """How many times each node's script started (from record.jsonl)."""
    from cruijff.run.records import read_attempts

    return {n.id: sum(1 for a in read_attempts(Path(plan.output_dir) / n.record) if a.start is not None)
            for n in plan.nodes}


class Crash(BaseException):
    """Stands for SIGKILL in unit tests: raised by FakeScheduler after sbatch, before apply commits."""


class FakeScheduler:
    """An in-memory SLURM: afterok dependencies, --kill-on-invalid-dep, job names and hashes.

    run_all() plays the queue to the end, writing each job's record.jsonl like a real job
    script (times from a fake clock); forget_finished() drops finished jobs from view, as squeue
    does when sacct is absent. Counts sbatch calls; `reject` node ids make sbatch fail;
    `crash_after=k` raises Crash right after the k-th sbatch.
    """

    name = "slurm"
    runs_jobs = False  # a scheduler: jobs run when run_all() plays the queue, not inside apply

    def __init__(self, fail=(), reject=(), crash_after: int | None = None, clock: float | None = None,
                 max_array_size: int = 0, room: int | None = None):
        self.max_array_size = max_array_size  # 0: no job arrays (one sbatch per node)
        self.room = room  # how many more jobs may be queued (None: no limit)
        self.arrays: list[dict] = []  # each submit_array call: its spec and node ids by task
        self.fail = set(fail)
        self.reject = set(reject)
        self.crash_after = crash_after
        self.clock = time.time() if clock is None else clock
        self.sbatch_calls = 0
        self.jobs_calls = 0
        self.cancelled: list[str] = []
        self._jobs: dict[str, dict] = {}  # job id -> {node, hash, deps, state, reason, exit, start, end, out}
        self._hidden: set[str] = set()
        self._next = 1000

    # --- Executor ---
    def submit(self, plan, node, parent_job_ids):
        from cruijff.errors import SchedulerError

        self.sbatch_calls += 1
        if node.id in self.reject:
            raise SchedulerError("sbatch: error: Batch job submission failed: Invalid account")
        self._next += 1
        job_id = str(self._next)
        deps = [d for p in parent_job_ids for d in self._expand(p)]
        self._jobs[job_id] = dict(node=node.id, hash=node.hash, deps=deps, state="pending",
                                  reason=None, exit=None, start=None, end=None, out=plan.output_dir,
                                  experiment=plan.experiment)
        self._settle()
        if self.crash_after is not None and self.sbatch_calls >= self.crash_after:
            self.crash_after = None
            raise Crash()
        return job_id

    def array_limit(self):
        return self.max_array_size

    def check_room(self, n_jobs):
        from cruijff.errors import SchedulerError

        if self.room is not None and n_jobs > self.room:
            raise SchedulerError(f"this apply would queue {n_jobs} jobs; nothing was submitted")

    def submit_array(self, plan, array):
        """Tasks become jobs `<id>_<t>`, named like SLURM names them (the array's name)."""
        from cruijff.errors import SchedulerError
        from cruijff.run.arrays import array_members

        self.sbatch_calls += 1
        nodes = {t: node_dir for t, (node_dir, _) in array_members(Path(array.script).read_text()).items()}
        assert sorted(nodes) == sorted(array.tasks), (nodes, array.tasks)
        if any(n in self.reject for n in nodes.values()):
            raise SchedulerError("sbatch: error: Batch job submission failed: Invalid account")
        self._next += 1
        array_id = str(self._next)
        self.arrays.append({"id": array_id, "spec": array, "nodes": nodes})
        for t in array.tasks:
            deps = [d for dep in array.after_ok for d in self._expand(dep)]
            if array.after_corr:
                deps.append(f"{array.after_corr}_{t}")
            self._jobs[f"{array_id}_{t}"] = dict(
                node=nodes[t], name=array.name, hash=array.digest, deps=deps, state="pending", reason=None,
                exit=None, start=None, end=None, out=plan.output_dir, experiment=plan.experiment)
        self._settle()
        if self.crash_after is not None and self.sbatch_calls >= self.crash_after:
            self.crash_after = None
            raise Crash()
        return array_id

    def _expand(self, job_id):
        """A whole array's id stands for all its tasks."""
        tasks = [j for j in self._jobs if j.startswith(f"{job_id}_")]
        return tasks if job_id not in self._jobs and tasks else [job_id]

    def jobs(self, plan):
        from cruijff.run.executors.base import JobInfo

        self.jobs_calls += 1
        return {
            j: JobInfo(job_id=j, node_id=d.get("name", d["node"]), state=d["state"], reason=d["reason"], exit_code=d["exit"],
                       start=d["start"], end=d["end"], node_hash=d["hash"])
            for j, d in self._jobs.items() if j not in self._hidden and d["experiment"] == plan.experiment
        }

    def cancel(self, job_ids):
        for j in job_ids:
            d = self._jobs.get(j)
            if d and d["state"] in ("pending", "running"):
                d["state"], d["reason"] = "cancelled", None
                self.cancelled.append(j)
        self._settle()

    # --- driving the fake cluster ---
    def _record(self, d, event):
        self.clock += 1.0
        path = Path(d["out"]) / d["node"] / "record.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"event": event, "time": self.clock, "job_id": d["job_id"]}
        if event == "start":
            entry["host"] = "fake"
            d["start"] = self.clock
        else:
            entry["exit_code"] = d["exit"]
            d["end"] = self.clock
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def _settle(self):
        """--kill-on-invalid-dep: a pending job whose dependency failed is cancelled."""
        changed = True
        while changed:
            changed = False
            for d in self._jobs.values():
                if d["state"] != "pending":
                    continue
                bad = [p for p in d["deps"] if p not in self._jobs or self._jobs[p]["state"] in ("failed", "cancelled")]
                if bad:
                    d["state"], d["reason"] = "cancelled", "DependencyNeverSatisfied"
                    changed = True

    def start(self, node_id):
        """Start the pending job of node_id (its dependencies must be done)."""
        for j, d in self._jobs.items():
            if d["node"] == node_id and d["state"] == "pending":
                d["job_id"] = j
                d["state"] = "running"
                self._record(d, "start")
                return j
        raise AssertionError(f"no pending job for {node_id}")

    def run_all(self):
        """Run every runnable job to its end, in dependency order."""
        progress = True
        while progress:
            progress = False
            for j, d in self._jobs.items():
                if d["state"] == "running" or (
                        d["state"] == "pending" and all(self._jobs[p]["state"] == "completed" for p in d["deps"])):
                    d["job_id"] = j
                    if d["state"] == "pending":
                        d["state"] = "running"
                        self._record(d, "start")
                    d["exit"] = 1 if d["node"] in self.fail else 0
                    d["state"] = "failed" if d["exit"] else "completed"
                    self._record(d, "end")
                    progress = True
            self._settle()

    def forget_finished(self):
        self._hidden |= {j for j, d in self._jobs.items() if d["state"] not in ("pending", "running")}

    def live_count(self, plan=None) -> int:
        return sum(1 for d in self._jobs.values() if d["state"] in ("pending", "running"))

    def jobs_by_node(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for j, d in self._jobs.items():
            out.setdefault(d["node"], []).append(j)
        return out

    def deps_of(self, job_id: str) -> list[str]:
        return list(self._jobs[job_id]["deps"])


def write_score(plan: Plan, node_id: str, value: float) -> None:
    """An inspect-style JSON log with a headline accuracy in the node's logs/ directory."""
    logs = Path(plan.output_dir) / node_id / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = {"status": "success", "eval": {"task": node_id.rsplit("/", 1)[-1]},
           "results": {"scores": [{"name": "match", "metrics": {"accuracy": {"value": value}}}]}}
    (logs / "2025-01-01T00-00-00_x.json").write_text(json.dumps(log))
