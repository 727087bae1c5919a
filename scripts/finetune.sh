#!/usr/bin/env bash
# GPU recipe: train a LoRA or prompt-tuning adapter for a template (letters/candidates_v1 unless
# TEMPLATE=... says otherwise) on ML-100K, then rank every user's sampled-20 test candidates with
# it and compare against the same model zero-shot, popularity and BPR-MF.
# A collaborative-token template (TEMPLATE=letters/candidates_cf_v1, yesno/will_like_cf_v1) trains
# with the vectors of CF_VECTORS (default: the SASRec run, fitted first when missing) and the
# residual (CF_RESIDUAL=false to leave it out); it has no zero-shot run, and SASRec joins the comparison.
# Needs a GPU box with the model on the Hub cache or as a local folder (MODEL=/path/to/model).
# Several GPUs: ACCELERATE=".venv/bin/accelerate launch --multi_gpu --num_processes 4" bash scripts/finetune.sh lora
# Usage: bash scripts/finetune.sh lora|prompt-tuning [key.sub=value ...]   (extra overrides for `llmrec train`)
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:?usage: finetune.sh lora|prompt-tuning [key.sub=value ...]}
shift
CFG=scripts/configs/train_gpu_${KIND//-/_}.toml
[ -f "$CFG" ] || { echo "finetune.sh: unknown adapter kind '$KIND' (no $CFG)" >&2; exit 2; }
MODEL=${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}
TEMPLATE=${TEMPLATE:-letters/candidates_v1}
SLUG=${TEMPLATE//\//-}   # the template as it appears in folder names
MODEL_NAME=$(basename "$MODEL")
PY=.venv/bin/python
[ -f runs/ml-100k/split.jsonl ] || .venv/bin/llmrec prepare --config scripts/configs/ml100k.toml > /dev/null
OUT=runs/ml-100k/adapters/$KIND--$MODEL_NAME--$SLUG
CF=()
ADAPTERS=("" "$OUT/best")
BASELINES=(bpr pop)
if [[ "$TEMPLATE" == *_cf_* ]]; then
  CF_VECTORS=${CF_VECTORS:-runs/ml-100k/baselines/sasrec--sampled-20.test}
  [ -f "$CF_VECTORS/vectors.npz" ] || .venv/bin/llmrec baseline --config scripts/configs/ml100k.toml --name sasrec \
    | grep -E '^sasrec on'
  CF=(train.cf.vectors="$CF_VECTORS" train.cf.residual="${CF_RESIDUAL:-true}")
  ADAPTERS=("$OUT/best")
  BASELINES=(bpr pop sasrec)
fi
${ACCELERATE:-$PY} -m llmrec.cli train --config "$CFG" model.name="$MODEL" train.template="$TEMPLATE" \
  train.out="$OUT" "${CF[@]}" "$@"
for adapter in "${ADAPTERS[@]}"; do
  .venv/bin/llmrec rank --config scripts/configs/ml100k.toml --template "$TEMPLATE" \
    --model "$MODEL" ${adapter:+--adapter "$adapter"} | grep -E '^(ranked|run directory|metrics)'
done
RUNS=()
for name in "${BASELINES[@]}"; do
  RUNS+=("runs/ml-100k/baselines/$name--sampled-20.test")
  [ -f "${RUNS[-1]}/metrics.json" ] ||
    .venv/bin/llmrec baseline --config scripts/configs/ml100k.toml --name "$name" | grep -E "^$name on"
done
.venv/bin/llmrec compare "${RUNS[@]}" \
  runs/ml-100k/rank/"$SLUG--$MODEL_NAME"--*sampled-20.test --reference bpr --out "runs/ml-100k/compare-$KIND-$SLUG"
