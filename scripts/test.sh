#!/usr/bin/env bash
# Set up .venv and run the test suite (fetches the embedded assets on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m ruff check llmrec tests scripts
.venv/bin/python -m pytest -q "$@"
