"""Benchmark: apply a 200-job plan to the local SLURM; time one status refresh.

    scripts/slurm_cluster.sh start
    .venv/bin/python bench/apply_slurm.py [--runs 40 --evals 4]

Prints the wall time and the number of sbatch/squeue/sacct calls of: the first apply, a
no-op re-apply, and one `status` refresh (collect). Jobs sleep 0 s; they are cancelled at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cruijff.apply import apply, cancel  # noqa: E402
from cruijff.executors.slurm import SlurmExecutor, default_runner  # noqa: E402
from cruijff.status import collect  # noqa: E402
from tests.helpers_plans import make_plan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--evals", type=int, default=4, help="eval nodes per run")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each job sleeps")
    args = parser.parse_args()
    calls: Counter[str] = Counter()

    def counting(argv, env=None):
        calls[argv[0]] += 1
        return default_runner(argv, env)

    ex = SlurmExecutor(counting)
    with tempfile.TemporaryDirectory() as tmp:
        plan = make_plan(tmp, runs=args.runs, evals_per_run=args.evals, base_evals=0, sleep=args.sleep,
                         experiment=f"bench{uuid.uuid4().hex[:6]}", executor="slurm")
        n = len(plan.nodes)

        def timed(label, fn):
            calls.clear()
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
            print(f"{label:<22} {dt:7.2f} s  calls: {dict(calls)}")
            return out

        print(f"plan: {n} jobs ({args.runs} fine-tunes × {args.evals} evals each)")
        result = timed("apply (first)", lambda: apply(plan.output_dir, ex))
        assert len(result.submitted) == n
        print(f"  → {len(result.submitted)} jobs submitted")
        timed("apply (no-op re-run)", lambda: apply(plan.output_dir, ex))
        report = timed("status refresh", lambda: collect(plan.output_dir, ex))
        print(f"  → counts: {report.counts()}")
        timed("cancel", lambda: cancel(plan.output_dir, ex))


if __name__ == "__main__":
    main()
