#!/usr/bin/env bash
# The main job on the embedded default: sets up .venv and runs the whole DaSS pipeline on CPU.
# Usage: bash script/demo.sh [key=value overrides...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source script/setup_env.sh "$ROOT/requirements.txt"
exec "$PY" main.py demo --config configs/demo.yaml "$@"
