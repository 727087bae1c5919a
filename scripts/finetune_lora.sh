#!/usr/bin/env bash
# GPU recipe for a lora adapter: see scripts/finetune.sh.
exec bash "$(dirname "$0")/finetune.sh" lora "$@"
