#!/usr/bin/env bash
# One prepared check for a GPU machine without internet that has torch and transformers (vllm
# optional): installs llmrec from this folder without dependencies, then runs the synthetic
# scoring benchmark (random weights of SmolLM2-135M's shape, no downloads) on the GPU — the
# transformers backend's naive and shared-prefix paths and, where vllm imports, its plain and
# prefix-cache paths — and whole-catalogue scoring (a 1,682-item synthetic catalogue: token trie vs
# per-candidate packing, beam search top-10), and prints one table; then a short LoRA training loop on
# random weights of a 0.5B-shaped model (tokens/s and peak memory without and with gradient
# checkpointing: scripts/bench_train_synthetic.py).
# Usage: bash scripts/gpu_check.sh [--users 200 --prompt-len 300]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: none"
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__)"
"$PY" -c "import vllm; print('vllm', vllm.__version__)" 2>/dev/null || echo "vllm: not importable (vLLM rows skipped)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" scripts/bench_synthetic.py --users 200 --naive-users 20 --catalogue 1682 "$@"
if "$PY" -c "import peft" 2>/dev/null; then
  "$PY" scripts/bench_train_synthetic.py --steps 10 --batch 8 --length 512
else
  echo "peft: not importable (training rows skipped)"
fi
