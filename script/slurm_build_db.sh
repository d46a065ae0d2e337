#!/usr/bin/env bash
# build-db on a SLURM cluster: a job array of teacher jobs, then a job array of student shards, then one
# merge job, each stage depending on the one before (docs/method.md#database).
#
#   bash script/slurm_build_db.sh submit CONFIG NUM_SHARDS [sbatch options...]
#       e.g. bash script/slurm_build_db.sh submit configs/paper.yaml 32 --partition=gpu --gres=gpu:1 --time=24:00:00
#
# What each job runs (also usable by hand, e.g. to test a stage locally with SLURM_ARRAY_TASK_ID set):
#   bash script/slurm_build_db.sh teachers CONFIG   # the teachers of this index's tasks (tasks k, k+N, ...)
#   bash script/slurm_build_db.sh shard CONFIG      # the students g with g % N == k
#   bash script/slurm_build_db.sh merge CONFIG      # assemble the task files, then the search pools and report
# The index k is SLURM_ARRAY_TASK_ID and N the array's size (SLURM_ARRAY_TASK_COUNT, else MAX - MIN + 1; the
# array must be 0..N-1). Teachers come first so that no two shards train the same teacher at once. Every stage
# resumes: a re-submitted array redoes only missing work. Python: $DASS_PYTHON, else the checkout's .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STAGE="${1:-}"; CONF="${2:-}"
if [ -z "$STAGE" ] || [ -z "$CONF" ]; then
  echo "usage: bash script/slurm_build_db.sh submit|teachers|shard|merge CONFIG [NUM_SHARDS sbatch-options...]" >&2
  exit 2
fi
shift 2
PY="${DASS_PYTHON:-$ROOT/.venv/bin/python}"

array_index() {   # prints "k N" from SLURM's environment
  local k="${SLURM_ARRAY_TASK_ID:?not a SLURM array task: set SLURM_ARRAY_TASK_ID (and SLURM_ARRAY_TASK_COUNT)}"
  local n="${SLURM_ARRAY_TASK_COUNT:-}"
  if [ -z "$n" ]; then n=$(( ${SLURM_ARRAY_TASK_MAX:?} - ${SLURM_ARRAY_TASK_MIN:-0} + 1 )); fi
  echo "$k $n"
}

case "$STAGE" in
  submit)
    N="${1:?give the number of shards: bash script/slurm_build_db.sh submit CONFIG NUM_SHARDS}"; shift
    self="$ROOT/script/slurm_build_db.sh"
    t=$(sbatch --parsable --array=0-$((N - 1)) --job-name=dass-teachers "$@" --wrap "bash '$self' teachers '$CONF'")
    s=$(sbatch --parsable --array=0-$((N - 1)) --job-name=dass-shards --dependency=afterok:"$t" "$@" \
          --wrap "bash '$self' shard '$CONF'")
    m=$(sbatch --parsable --job-name=dass-merge --dependency=afterok:"$s" "$@" --wrap "bash '$self' merge '$CONF'")
    echo "submitted: teachers $t, shards $s, merge $m"
    ;;
  teachers)
    read -r K N < <(array_index)
    exec "$PY" -m dass build-db --config "$CONF" --teachers --shard "$K" --num-shards "$N" --no-progress "$@"
    ;;
  shard)
    read -r K N < <(array_index)
    exec "$PY" -m dass build-db --config "$CONF" --shard "$K" --num-shards "$N" --no-candidates --no-progress "$@"
    ;;
  merge)
    exec "$PY" -m dass build-db --config "$CONF" --merge --no-progress "$@"
    ;;
  *)
    echo "error: unknown stage '$STAGE'; use submit, teachers, shard or merge" >&2
    exit 2
    ;;
esac
