"""What a cruijff evaluation of N samples spends waiting rather than computing (issue 21.3).

inspect-ai's hf provider collects requests into a batch of `max_connections` (32 by default) and
generates a batch that is not full only after 2 seconds with no new request; each request then
polls its result once a second. cruijff's tasks send up to 64 samples as one batch
(cruijff.tasks.generate_config). This runs the `inspect eval` command cruijff renders for an
evaluation node (tiny random Llama, capitalization task, CPU) as rendered, and with inspect's
default batch (`--max-connections 32`, which overrides the task's), alternately, and reports wall
time, the CPU time of the inspect process and its children, and their difference: the time spent
waiting.

    python bench/eval_wait.py [--samples 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(node: Path, argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one `inspect eval`."""
    cpu, start = children_cpu(), time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSPECT_DISPLAY": "none"}
    proc = subprocess.run(argv, cwd=node, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"inspect eval failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from ruamel.yaml import YAML

    from cruijff.compiler.render.inspect import eval_commands, model_config, task_config
    from cruijff.llm.tiny import build_tiny_llama

    tmp = Path(tempfile.mkdtemp(prefix="eval-wait-"))
    model = build_tiny_llama(tmp / "model", seed=0)
    cons, vow = "bcdfghjklmnprstv", "aeiou"
    words = [f"{a}{b}{c}{d}" for a in cons for b in vow for c in cons for d in vow][:args.samples]
    data = tmp / "words.json"
    data.write_text(json.dumps({"test": [{"input": w, "output": w.capitalize()} for w in words]}))
    node = tmp / "node"
    node.mkdir()
    dataset = {"path": str(data), "format": "instruct_json", "splits": {"test": "test"}}
    YAML().dump(model_config(model_dir=str(model), gpus=0, provider="hf"), node / "model_config.yaml")
    YAML().dump(task_config(dataset=dataset, prompt={"template": None, "system": None}, task={}),
                node / "task_config.yaml")
    (argv,) = eval_commands(task_file=str(REPO / "experiments" / "tasks" / "capitalization.py"),
                            task_name="capitalization", model_dir=str(model), provider="hf", seed=1,
                            limit=None, metadata={}, max_tokens=8)
    inspect = argv[argv.index("--") + 1:]
    inspect[0] = str(Path(sys.executable).with_name("inspect"))
    variants = {"inspect's default batch": [*inspect, "--max-connections", "32"], "as rendered": inspect}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, cmd in variants.items():
            times[name].append(run_once(node, cmd))
    print(f"inspect eval of {args.samples} samples, tiny model, CPU; median of {args.rounds} rounds")
    for name, runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"  {name:24s} wall {wall:6.2f} s  CPU {cpu:6.2f} s  waiting {max(0.0, wall - cpu):5.2f} s")


if __name__ == "__main__":
    main()
