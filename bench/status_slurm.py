"""Benchmark: `cruijff status`, `status --all`, `status --json`, a no-op `apply` and `cancel` on a
5,000-job plan in the local SLURM, each timed end to end as a process (imports included).

    scripts/slurm_cluster.sh start
    .venv/bin/python bench/status_slurm.py [--runs 1000] [--evals 4] [--repeat 3] [--keep DIR]

The plan (runs × evals evaluations, jobs that sleep 240 s so that the queue stays full) is
applied once, in process; then each command runs `--repeat` times as `python -m cruijff ...` and
the median wall and CPU time are printed (CPU: the command and the squeue/sacct it ran, a
figure that does not grow when other work shares the machine), with the size of its output. `cancel` runs last, once. Targets
(issue 17): status ≤ 1 s and a no-op re-apply ≤ 1 s at 5,000 jobs. `--keep DIR` writes the plan
there and leaves the jobs queued (for profiling); cancel them with `cruijff cancel DIR`.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cruijff.run.apply import apply  # noqa: E402
from cruijff.run.executors.slurm import SlurmExecutor  # noqa: E402
from tests.helpers_plans import make_plan  # noqa: E402


def timed(argv: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of it and its children, bytes printed) of `python -m cruijff ARGV`.

    Bytecode is cached as in an installed package (PYTHONDONTWRITEBYTECODE is dropped)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "150"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cruijff", *argv], capture_output=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:  # e.g. an option an older cruijff lacks: say so, time the rest
        print(f"  cruijff {' '.join(argv[:1] + argv[2:])} failed ({proc.returncode}): "
              f"{proc.stderr.decode().strip()[-300:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, len(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--evals", type=int, default=4, help="eval nodes per run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="plan here and leave the jobs queued")
    args = parser.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="cruijff-bench-"))
    plan = make_plan(root, runs=args.runs, evals_per_run=args.evals, base_evals=0, sleep=240,
                     experiment=f"bench{uuid.uuid4().hex[:6]}", executor="slurm")
    out = plan.output_dir
    t0 = time.perf_counter()
    result = apply(out, SlurmExecutor())
    print(f"{len(plan.nodes)} jobs applied in {time.perf_counter() - t0:.2f} s "
          f"({result.sbatch_calls} sbatch calls); plan in {out}")
    rows = [("status", ["status", out]), ("status --all", ["status", out, "--all"]),
            ("status --json", ["status", out, "--json"]), ("apply (no-op)", ["apply", out])]
    if args.keep:
        rows = rows[:1]
    print(f"{'command':<16} {'wall s':>7} {'min s':>6} {'CPU s':>6} {'output':>11}")
    timed(["status", out])  # warm-up: bytecode cache, page cache
    try:
        for label, argv in rows:
            runs = [timed(argv) for _ in range(args.repeat)]
            walls = [w for w, _, _ in runs]
            cpu = statistics.median(c for _, c, _ in runs)
            print(f"{label:<16} {statistics.median(walls):>7.2f} {min(walls):>6.2f} {cpu:>6.2f} {runs[0][2]:>10,}B")
    finally:
        if not args.keep:
            wall, cpu, _ = timed(["cancel", out])
            print(f"{'cancel':<16} {wall:>7.2f} {wall:>6.2f} {cpu:>6.2f}")
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
