#!/usr/bin/env bash
# Build the meta-training database (teachers -> students -> remap -> embeddings -> KD -> records).
# Usage: bash script/build_database.sh [GPU_NUM] [CONFIG] [extra main.py args / key=value ...]
#   bash script/build_database.sh 0 configs/paper.yaml
#   bash script/build_database.sh 0 configs/paper.yaml --shard 0 --num-shards 4   # one of 4 cluster jobs
#   bash script/build_database.sh 0 configs/paper.yaml --merge                      # after all shards
#   GPU_NUM: CUDA device(s), or "cpu" (default 0); CONFIG: default $DASS_CONFIG or configs/paper.yaml
set -euo pipefail
GPU="${1:-0}"; CONF="${2:-}"; shift $(( $# > 2 ? 2 : $# ))
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"
dass_run "$GPU" build-db --config "${CONF:-$CONFIG}" "$@"
