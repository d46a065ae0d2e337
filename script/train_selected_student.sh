#!/usr/bin/env bash
# KD of a list of selected students on a dataset, each once with seed db.kd_seed (0), like the
# authors' script/train_selected_student.sh ("train 50 selected students for correlation").
# Usage: bash script/train_selected_student.sh GPU DATASET [STUDENTS_FILE] [key=value overrides...]
#   STUDENTS_FILE  JSON/YAML list of {"depth_config": [...], "channel_widths": [[...], ...]}, or a .pt list
#                  in the authors' form (default: preprocessed/net_info/net_samples_50_for_correlation.pt;
#                  the authors' pickled file needs run.allow_legacy_pickle=true)
# Results: run.out_dir/kd/DATASET/selected.csv (one row per student) and run.out_dir/result.csv.
# Environment: DASS_CONFIG (default configs/paper.yaml), DASS_NPROC=N for torchrun.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash script/train_selected_student.sh GPU DATASET [STUDENTS_FILE] [key=value ...]" >&2
  exit 2
fi
GPU=$1; DATASET=$2; shift 2
ARCHS=preprocessed/net_info/net_samples_50_for_correlation.pt
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then ARCHS=$1; shift; fi
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"
dass_run "$GPU" kd --config "$CONFIG" --task "$DATASET" --archs "$ARCHS" --method selected "$@"
