# Sourced by the scripts that take a GPU argument: sets up .venv, then `dass_run GPU main.py-args...`
# selects the device (CUDA_VISIBLE_DEVICES=GPU, or run.device=cpu for "cpu") and runs main.py, through
# torchrun with DASS_NPROC processes when DASS_NPROC > 1.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source script/setup_env.sh "$ROOT/requirements.txt"
CONFIG="${DASS_CONFIG:-configs/paper.yaml}"

dass_run() {
  local gpu=$1; shift
  local dev=()
  if [ "$gpu" = "cpu" ]; then dev=(run.device=cpu); else export CUDA_VISIBLE_DEVICES="$gpu"; fi
  if [ "${DASS_NPROC:-1}" -gt 1 ]; then
    exec "$PY" -m torch.distributed.run --standalone --nproc_per_node="$DASS_NPROC" main.py "$@" "${dev[@]}"
  fi
  exec "$PY" main.py "$@" "${dev[@]}"
}
