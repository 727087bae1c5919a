#!/usr/bin/env bash
# The "compare prompt templates" job: zero-shot, every shipped template on the embedded model,
# against popularity and BPR-MF, on sampled-20 test candidates, for the first N users (default
# 200; baselines always score all users, the comparison uses the users every run shares).
# Usage: bash scripts/compare_templates.sh [N] [TEMPLATE ...]   (default: all shipped templates)
# Runs are resumable; the report lands in runs/ml-100k/compare/.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
shift || true
CFG=scripts/configs/ml100k.toml
LLMREC=.venv/bin/llmrec
OUT=$(.venv/bin/python -c "from llmrec.config import load_config; print(load_config('$CFG').out_dir)")
[ -f "$OUT/split.jsonl" ] || $LLMREC prepare --config $CFG > /dev/null
templates=("$@")
[ ${#templates[@]} -gt 0 ] || templates=($($LLMREC prompts list | awk '{print $1}'))
$LLMREC baseline --config $CFG --name pop | grep -E '^pop on'
$LLMREC baseline --config $CFG --name bpr | grep -E '^(fitted|bpr on)'
dirs=("$OUT/baselines/bpr--sampled-20.test" "$OUT/baselines/pop--sampled-20.test")
for t in "${templates[@]}"; do
  $LLMREC rank --config $CFG --template "$t" --users "$N" | grep -E '^(ranked|run directory)'
  dirs+=("$OUT/rank/${t//\//-}--smollm2-135m-instruct--sum--sampled-20.test")
done
$LLMREC compare "${dirs[@]}" --reference bpr --out "$OUT/compare"
