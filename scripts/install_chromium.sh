#!/usr/bin/env bash
# Headless Chromium for the chat page's browser test (tests/chat/test_chat_browser.py), from the
# Debian archive (no browser download from elsewhere). Idempotent: does nothing when a chromium
# binary is already on PATH. Needs root (or sudo) and apt.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "chromium: $(command -v chromium || command -v chromium-browser)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "chromium: $(command -v chromium)"
