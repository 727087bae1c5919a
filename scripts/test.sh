#!/usr/bin/env bash
# Set up .venv (and Chromium) and run the test suite (fetches the embedded assets on first use), then the vLLM
# tests in their own virtualenv (scripts/test_vllm.sh; LLMREC_SKIP_VLLM=1 leaves them out).
# Arguments go to the main pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# headless Chromium (Debian) for the chat page's browser test; without it that test skips and says why
bash scripts/install_chromium.sh || echo "chromium could not be installed: tests/chat/test_chat_browser.py will skip"
.venv/bin/python -m ruff check llmrec tests scripts
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
.venv/bin/python -m pytest -q "$@"
if [ "${LLMREC_SKIP_VLLM:-0}" != 1 ]; then
  bash scripts/test_vllm.sh
fi
