#!/usr/bin/env bash
# Rapid search with the meta-learned DaSS predictor on the unseen datasets (authors' interface).
# Usage: bash script/run_search.sh [GPU_NUM] [CONFIG] [extra main.py args / key=value ...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GPU="${1:-0}"; CONFIG="${2:-configs/paper.yaml}"; shift $(( $# > 2 ? 2 : $# ))
source script/setup_env.sh
CUDA_VISIBLE_DEVICES="$GPU" exec "$PY" main.py search --config "$CONFIG" "$@"
