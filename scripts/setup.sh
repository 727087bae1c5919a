#!/usr/bin/env bash
# Create .venv and install llmrec with its dev tools. Torch is installed first, pinned, so that a
# CPU machine takes the CPU wheel instead of resolving a multi-GB CUDA build; set TORCH_SPEC to
# choose another build (e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
"$VENV/bin/python" -m pip install -q -e ".[dev]"
echo "llmrec installed in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
