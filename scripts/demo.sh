#!/usr/bin/env bash
# The main job on a fresh machine: set up, plan the shipped twins experiment, then run the tiny
# experiment end to end on this machine (local executor, CPU) and show its status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1
export SCRATCH="${SCRATCH:-$PWD/out/scratch}"

echo "== cruijff plan experiments/twins.yaml"
cruijff plan experiments/twins.yaml

echo "== the tiny experiment, end to end on this machine"
[ -f experiments/tiny/model/model.safetensors ] || cruijff tiny-model experiments/tiny/model
cruijff plan experiments/tiny.yaml
cruijff apply experiments/tiny/out --executor local
cruijff status experiments/tiny/out
cruijff report experiments/tiny/out
