"""Token fit at the size of real data (issue 27.5): `cruijff plan`'s measurement subprocess
(`python -m cruijff.train.measure`) and `cruijff data stats` on N generated instruct rows.

For each way it reports rows/s, the time per million rows (extrapolated) and the child's peak
RSS. Each is timed twice: batched (the default) and row by row (`measure.BATCHED = False`; data
stats without `_batch_counter`: the ways before issue 27.5); the answers must be equal. Imports
are not timed. The tokenizer is the tiny model's (ChatML) unless
--model names a model folder (e.g. .cache/SmolLM2-135M-Instruct).

Measured 2026-12-03 (2 shared cores, tiny model, chat; the imports of torchtune and transformers,
~7 s a run, are now left out of the time; timings vary ~1.5x with the other load on the machine).
Before issue 27.5's third pass, 100,000 rows: measure batched 4,858 rows/s (206 s per million;
379 s under more load), data stats batched 3,124 rows/s (320 s; 496 s), peak RSS 599 / 624 MB;
1,000,000 rows: measure 227 s, peak RSS 1,464 MB. Half was two jinja renders per row, half the
Rust encoding (~1 µs a token: the tiny model's 512-token vocabulary makes ~165 tokens a row) and
BatchEncoding. Now renders are string joins where the template copies contents verbatim, and
tokens are counted by pieces (cruijff.train.bulk). Right after, same load, 100,000 rows: measure
batched 31,913 rows/s (31 s per million) vs row by row 2,927 rows/s (342 s); data stats batched
23,528 rows/s (43 s) vs row by row 2,292 rows/s (436 s); peak RSS 599 / 614 MB; answers equal.
1,000,000 rows: measure 39.7 s, data stats 43.4 s, peak RSS 1,463 MB (the rows themselves).
SmolLM2-135M-Instruct, 20,000 rows: measure 66 s per million, equal to row by row. What is left
per row is Python (row_prompt, joins, regex cuts, dict look-ups).
Then (same day, later) a big split's chunks shared out over the cores (cruijff.cores: a forked
process per core, 2 here): 1,000,000 rows, measure 18.5 s and data stats 18.7 s per million on a
quiet machine (22.4 s and 25.2 s beside other load), 100,000 rows 23–25 s per million (the
serial part: reading the JSON and the setup check of every row's prompt, ~4 s per million);
peak RSS 1,463 MB as before, the worker's 904–953 MB mostly pages shared with the parent.

    python bench/token_fit.py                 # 100,000 rows, tiny model, chat style
    python bench/token_fit.py --rows 20000 --style text_completion --model .cache/SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the cat sat on a mat while seven quick foxes jumped over lazy dogs near the river bank "
         "under grey skies and nobody knew why").split()
TARGET_S_PER_MILLION = 20.0

CHILD = """
import json, resource, sys, time
sys.argv = ["measure"]
way = {way!r}
from cruijff.data import stats
from cruijff.train import measure, datasets  # imports are not timed: the rows are
from torchtune import config  # imported lazily by both (~7 s here): not timed either
from transformers import AutoTokenizer
if way == "stats_per_row":
    stats._batch_counter = lambda tokenizer: None
t = time.perf_counter()
if way.startswith("stats"):
    from cruijff.data.stats import token_stats
    splits, _ = token_stats({data!r}, {model!r}, template="Q: {{input}}\\nA:", max_seq_len={limit})
    answer = {{s.split: [s.rows, s.total.get("max"), s.over_max] for s in splits}}
else:
    measure.BATCHED = way == "batched"
    answer = measure.measure(json.loads({request!r}))
print(json.dumps({{"s": time.perf_counter() - t, "answer": answer,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def instruct_rows(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    say = lambda k: " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, k)))  # noqa: E731
    return [{"input": say(60), "output": say(20)} for _ in range(n)]


def run(way: str, data: Path, model: Path, limit: int, style: str) -> dict:
    component = {"_component_": "cruijff.train.datasets.prompted_dataset", "path": str(data),
                 "format": "instruct_json", "split": "train", "template": "Q: {input}\nA:",
                 "system": None, "train_on_input": False, "packed": False, "style": style}
    request = json.dumps({"key": "k", "tokenizer": {"_component_": "cruijff.train.tokenizer.hf_tokenizer",
                                                     "path": str(model), "max_seq_len": limit},
                          "datasets": {"train": component}})
    code = CHILD.format(way=way, data=str(data), model=str(model), limit=limit, request=request)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the tiny model)")
    ap.add_argument("--style", choices=("chat", "text_completion"), default="chat")
    ap.add_argument("--max-seq-len", type=int, default=64)
    ap.add_argument("--ways", default="batched,per_row,stats,stats_per_row")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(REPO))
            from cruijff.llm.tiny import build_tiny_llama

            model = build_tiny_llama(Path(tmp) / "tiny", seed=0)
        data = Path(tmp) / "d.json"
        data.write_text(json.dumps({"train": instruct_rows(args.rows, 0), "validation": instruct_rows(10, 1),
                                    "test": instruct_rows(10, 2)}))
        print(f"{args.rows:,} instruct rows, {args.style}, max_seq_len {args.max_seq_len}, tokenizer {model.name}")
        answers = {}
        for way in args.ways.split(","):
            r = run(way, data, model, args.max_seq_len, args.style)
            answers[way] = r["answer"]
            per_million = r["s"] / args.rows * 1e6
            print(f"  {way:8s} {r['s']:7.1f} s  {args.rows / r['s']:9,.0f} rows/s  "
                  f"{per_million:7.1f} s per million rows (target {TARGET_S_PER_MILLION:.0f})  "
                  f"peak RSS {r['rss_mb']:.0f} MB"
                  + (f" (a worker process: {r['worker_rss_mb']:.0f} MB, shared until written)"
                     if r.get("worker_rss_mb") else ""))
        if "stats" in answers and "stats_per_row" in answers:
            print(f"  stats == stats_per_row: {answers['stats'] == answers['stats_per_row']}")
        if "batched" in answers and "per_row" in answers:
            same = answers["batched"] == answers["per_row"]
            print(f"  batched == per_row: {same}  {json.dumps(answers['batched'])}")
            if not same:
                print(f"  per_row: {json.dumps(answers['per_row'])}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
