#!/usr/bin/env bash
# Run on a bare GPU machine with torch and transformers (the device tool's machine): the ML path and the bulk job's
# page loop (worker/ml + worker/jobs/pipeline.py; no database there). Numbers go to the folder given as $1 (or $OUT).
# BERT-base bf16 over 100k documents takes well under 8 minutes on an H100/H200.
#   bash bench/gpu_check.sh "$OUT"            # or: bash bench/gpu_check.sh /tmp/out --docs 20000 --quick
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"
shift || true
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" 2>&1 || true
python bench/gpu_check.py --out "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu.log"
