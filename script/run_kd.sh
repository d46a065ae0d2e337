#!/usr/bin/env bash
# KD of the searched student on an unseen dataset with seeds 1, 2, 3 (docs/method.md#kd), like the authors'
# script/run_kd.sh: reads the search step's pick (search.out/obtained_net_index.yaml, method dass),
# distils it from the dataset's teacher, prints best accuracy mean +- std; rows go to run.out_dir/result.csv.
# Usage: bash script/run_kd.sh GPU DATASET [key=value overrides...]
#   GPU      CUDA device(s) for CUDA_VISIBLE_DEVICES, or "cpu";  DATASET  cub | dtd | quickdraw | stanford_cars | ...
# Environment: DASS_CONFIG (default configs/paper.yaml), DASS_METHOD (default dass), DASS_SEEDS
# (default 1,2,3), DASS_NPROC=N for N DDP processes through torchrun.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash script/run_kd.sh GPU DATASET [key=value ...]" >&2
  exit 2
fi
GPU=$1; DATASET=$2; shift 2
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"
dass_run "$GPU" kd --config "$CONFIG" --task "$DATASET" --from-search --method "${DASS_METHOD:-dass}" \
  --seeds "${DASS_SEEDS:-1,2,3}" kd.remap=copy_paste_first "$@"
