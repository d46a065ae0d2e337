#!/usr/bin/env bash
# Train the ResNet teacher of a task (docs/method.md#teachers), like the authors' script/train_teacher.sh.
# Usage: bash script/train_teacher.sh GPU DATASET [key=value overrides...]
#   GPU      CUDA device(s) for CUDA_VISIBLE_DEVICES (e.g. 0 or 0,1), or "cpu"
#   DATASET  a task of the config (cub, dtd, tiny_imagenet-3, ...) or "all"
# Meta-test datasets use teacher.lr_meta_test (0.01) automatically. Environment: DASS_CONFIG (default
# configs/paper.yaml); DASS_NPROC=N runs N DDP processes through torchrun.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash script/train_teacher.sh GPU DATASET [key=value ...]" >&2
  exit 2
fi
GPU=$1; DATASET=$2; shift 2
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"
dass_run "$GPU" train-teacher --config "$CONFIG" --task "$DATASET" "$@"
