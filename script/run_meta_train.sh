#!/usr/bin/env bash
# Meta-train the DaSS predictor with the paper's settings (authors' interface).
# Usage: bash script/run_meta_train.sh [GPU_NUM] [key=value overrides... | --resume | --fresh]
#   GPU_NUM selects the CUDA device (CUDA_VISIBLE_DEVICES); without it the run uses run.device
#   (auto: CUDA when present, else CPU). Reads the database at db.out, writes meta.out.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source script/setup_env.sh "$ROOT/requirements.txt"
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  export CUDA_VISIBLE_DEVICES="$1"
  shift
fi
exec "$PY" main.py meta-train --config "${DASS_CONFIG:-configs/paper.yaml}" "$@"
