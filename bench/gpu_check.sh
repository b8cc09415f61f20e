#!/usr/bin/env bash
# Run on a bare GPU machine with torch and transformers (the device tool's machine): the ML path only.
set -euo pipefail
cd "$(dirname "$0")/.."
python bench/gpu_check.py --out "${OUT:-.}/gpu.json" "$@"
