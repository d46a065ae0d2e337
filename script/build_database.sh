#!/usr/bin/env bash
# Build the meta-training database (teachers -> students -> remap -> embeddings -> KD -> records).
# Usage: bash script/build_database.sh [GPU_NUM] [CONFIG] [extra main.py args / key=value ...]
#   bash script/build_database.sh 0 configs/paper.yaml
#   bash script/build_database.sh 0 configs/paper.yaml --shard 0 --num-shards 4   # one of 4 cluster jobs
#   bash script/build_database.sh 0 configs/paper.yaml --merge                      # after all shards
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GPU="${1:-0}"; CONFIG="${2:-configs/paper.yaml}"; shift $(( $# > 2 ? 2 : $# ))
source script/setup_env.sh
CUDA_VISIBLE_DEVICES="$GPU" exec "$PY" main.py build-db --config "$CONFIG" "$@"
