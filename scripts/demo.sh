#!/usr/bin/env bash
# The main job on a fresh machine: set up, plan the shipped twins experiment, then watch a real
# pretrained model learn: experiments/smollm2.yaml fine-tunes SmolLM2-135M-Instruct (built offline
# from its PyPI package) on this machine's CPU and evaluates it before and after. Ends with the
# fine-tune's difference from the base model on the same test items, with its 95% interval and
# p-value (cruijff report: paired comparisons, cruijff/results/comparisons.py).
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

echo "== cruijff report: the fine-tune against the base model on the same held-out words"
cruijff report experiments/smollm2/out
