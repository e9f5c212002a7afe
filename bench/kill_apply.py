"""Benchmark: SIGKILL `cruijff apply` at random moments against the real local SLURM with a slow
`sbatch` (a wrapper on PATH that sleeps before calling the real one), re-apply at once, and count
each node's jobs in squeue + sacct.

    scripts/slurm_cluster.sh start
    .venv/bin/python bench/kill_apply.py [--kills 60] [--delay 0.6] [--per-plan 4]

Prints the kills tried, how many hit an sbatch in flight, duplicates and missing jobs (both must
be 0), and how long a re-apply waits after a kill that left an sbatch in flight (measured with a
slower sbatch, --wait-delay, so that it is still running when the re-apply looks). Plans alternate
between job arrays and plain jobs; jobs sleep and are cancelled at the end of each plan.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers_faults import (  # noqa: E402
    REPO,
    KillStats,
    cancel_experiment,
    env_with,
    in_flight,
    kill_round,
    node_jobs,
    slow_sbatch,
)
from tests.helpers_plans import make_plan  # noqa: E402


def wait_after_in_flight_kill(root: Path, bin_dir: Path, experiment: str) -> tuple[float, float]:
    """Kill apply the moment its first sbatch starts; re-apply at once: (its wall time, waited_s)."""
    plan = make_plan(root, runs=2, evals_per_run=1, base_evals=0, sleep=600, experiment=experiment,
                     executor="slurm")
    argv = [sys.executable, "-m", "cruijff", "apply", plan.output_dir, "--executor", "slurm", "--json"]
    env = env_with(bin_dir)
    try:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not in_flight(bin_dir) and proc.poll() is None:
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        started = time.monotonic()
        out = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        wall = time.monotonic() - started
        dupes = sum(1 for j in node_jobs(plan).values() if len(j) != 1)
        assert dupes == 0, node_jobs(plan)
        return wall, json.loads(out.stdout).get("waited_s", 0.0)
    finally:
        cancel_experiment(experiment)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=60, help="at least this many SIGKILLs")
    parser.add_argument("--per-plan", type=int, default=4, help="kills in a row before a final apply")
    parser.add_argument("--delay", type=float, default=0.6, help="seconds the slow sbatch sleeps")
    parser.add_argument("--window", type=float, default=4.0, help="kill at a random moment in [0, window) s")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--wait-delay", type=float, default=3.0,
                        help="sbatch's sleep when measuring how long a re-apply waits for it")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    stats = KillStats()
    experiment = f"k{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bin_dir = slow_sbatch(root / "bin", args.delay)
        round_ = 0
        while stats.kills < args.kills:
            plan = make_plan(root / str(round_), runs=2, evals_per_run=1, base_evals=1, sleep=600,
                             experiment=f"{experiment}-{round_}", executor="slurm",
                             cluster={"arrays": round_ % 2 == 0})
            try:
                kill_round(plan, bin_dir, rng, args.per_plan, args.window, stats)
            finally:
                cancel_experiment(plan.experiment)
            round_ += 1
            print(f"  plan {round_}: kills {stats.kills} (in flight {stats.in_flight}), "
                  f"duplicates {stats.duplicates}, missing {stats.missing}", flush=True)
        slow = slow_sbatch(root / "bin-wait", args.wait_delay)
        waits = [wait_after_in_flight_kill(root / f"w{i}", slow, f"{experiment}-w{i}") for i in range(3)]
    print(f"kills: {stats.kills} (of which {stats.in_flight} while an sbatch was in flight), "
          f"plans: {round_}, duplicates: {stats.duplicates}, missing: {stats.missing}, "
          f"{time.monotonic() - started:.0f} s")
    print("re-apply right after a kill with an sbatch in flight (sbatch sleeps "
          f"{args.wait_delay} s): " + ", ".join(f"{wall:.1f} s wall, waited {w:.1f} s" for wall, w in waits))
    sys.exit(1 if stats.duplicates or stats.missing else 0)


if __name__ == "__main__":
    main()
