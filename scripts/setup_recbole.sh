#!/usr/bin/env bash
# Build .venv-recbole: RecBole 1.2.1 as a peer implementation for scripts/bench_baselines.py (its
# SASRec and NeuMF), in its own virtualenv so that its pins never touch llmrec's. RecBole 1.2.1
# uses numpy's removed `np.float_`, hence numpy 1.26; scripts/recbole_peer.py works around its
# ray import, torch.load default and tensorboard writer.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RECBOLE_VENV:-.venv-recbole}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q torch==2.13.0 recbole==1.2.1
"$VENV/bin/python" -m pip install -q "numpy==1.26.4" "pandas==2.2.3"
echo "RecBole ready in $VENV"
