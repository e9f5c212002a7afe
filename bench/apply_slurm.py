"""Benchmark: apply plans of 50, 200 and 1,000 runs (× 4 evaluations) to the local SLURM.

    scripts/slurm_cluster.sh start
    .venv/bin/python bench/apply_slurm.py [--runs 50 200 1000] [--evals 4] [--no-arrays]

For each size prints: sbatch calls and wall time of the first apply, of a no-op re-apply, and of
one `status` refresh (collect: one squeue + one sacct), then cancels everything. Jobs sleep 300 s
so that the queue stays full while it is measured. Targets (issue 7): the 5,000-job plan applied
in under 10 s, a status refresh under 1 s.
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

from cruijff.run.apply import apply, cancel  # noqa: E402
from cruijff.run.executors.slurm import SlurmExecutor, default_runner  # noqa: E402
from cruijff.run.status import collect  # noqa: E402
from tests.helpers_plans import make_plan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--evals", type=int, default=4, help="eval nodes per run")
    parser.add_argument("--sleep", type=float, default=300.0, help="seconds each job sleeps")
    parser.add_argument("--no-arrays", action="store_true", help="one sbatch per job (the old way)")
    args = parser.parse_args()
    calls: Counter[str] = Counter()

    def counting(argv, env=None):
        calls[argv[0]] += 1
        return default_runner(argv, env)

    print(f"{'runs':>5} {'jobs':>6} | {'apply s':>8} {'sbatch':>6} | {'re-apply s':>10} | {'status s':>8} "
          f"{'squeue':>6} {'sacct':>5}")
    for runs in args.runs:
        ex = SlurmExecutor(counting, arrays=not args.no_arrays, submit_rate=None if args.no_arrays else 10)
        with tempfile.TemporaryDirectory() as tmp:
            plan = make_plan(tmp, runs=runs, evals_per_run=args.evals, base_evals=0, sleep=args.sleep,
                             experiment=f"bench{uuid.uuid4().hex[:6]}", executor="slurm")
            n = len(plan.nodes)

            def timed(fn):
                calls.clear()
                t0 = time.perf_counter()
                out = fn()
                return out, time.perf_counter() - t0, dict(calls)

            try:
                result, t_apply, c_apply = timed(lambda: apply(plan.output_dir, ex))
                assert len(result.submitted) == n
                _, t_again, _ = timed(lambda: apply(plan.output_dir, ex))
                report, t_status, c_status = timed(lambda: collect(plan.output_dir, ex))
                assert sum(report.counts().get(s, 0) for s in ("pending", "running")) == n
            finally:
                cancel(plan.output_dir, ex)
            print(f"{runs:>5} {n:>6} | {t_apply:>8.2f} {c_apply.get('sbatch', 0):>6} | {t_again:>10.2f} | "
                  f"{t_status:>8.2f} {c_status.get('squeue', 0):>6} {c_status.get('sacct', 0):>5}")


if __name__ == "__main__":
    main()
