#!/usr/bin/env bash
# GPU recipe for a prompt-tuning adapter: see scripts/finetune.sh.
exec bash "$(dirname "$0")/finetune.sh" prompt-tuning "$@"
