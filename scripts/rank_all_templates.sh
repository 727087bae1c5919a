#!/usr/bin/env bash
# Rank the first N ML-100K users (default 50) on sampled-20 with every shipped template, zero-shot
# on the embedded model; each run lands in runs/ml-100k/rank/<template>--... and is resumable.
# Usage: bash scripts/rank_all_templates.sh [N] [key.sub=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
shift || true
for t in $(.venv/bin/llmrec prompts list | awk '{print $1}'); do
  .venv/bin/llmrec rank --config scripts/configs/ml100k.toml --template "$t" --users "$N" "$@" \
    | grep -E '^(ranked|metrics|run directory)'
done
