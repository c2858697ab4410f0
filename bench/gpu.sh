#!/usr/bin/env bash
# The GPU benchmark in one go (about 6-8 minutes on an H100/H200): five workloads (SimCLR twice:
# views made in the workers, then on the GPU), each
# beside transformers' Trainer, one Markdown table in $OUT/gpu.md (or bench/out/gpu.md).
# bench/gpu.py needs torch, torchvision and transformers only (no datasets, no mmssl install:
# it imports mmssl's augmentation modules from this checkout),
# all of which the device machines have. Extra arguments go to bench/gpu.py, e.g.
#   bash bench/gpu.sh --workloads mae bert --no-compile
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 python3 bench/gpu.py --out "$out/gpu.md" "$@" 2>&1 | tee "$out/gpu.log"
