#!/usr/bin/env bash
# Rapid search with the meta-learned DaSS predictor on the unseen datasets (authors' interface).
# Usage: bash script/run_search.sh [GPU_NUM] [CONFIG] [extra main.py args / key=value ...]
#   GPU_NUM: CUDA device(s), or "cpu" (default 0); CONFIG: default $DASS_CONFIG or configs/paper.yaml
set -euo pipefail
GPU="${1:-0}"; CONF="${2:-}"; shift $(( $# > 2 ? 2 : $# ))
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"
dass_run "$GPU" search --config "${CONF:-$CONFIG}" "$@"
