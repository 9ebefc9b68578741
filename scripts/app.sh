#!/usr/bin/env bash
# Install everything and start the app on http://127.0.0.1:8501 with the demo data ready.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export AQA_RUNS_DIR=${AQA_RUNS_DIR:-$PWD/runs}
.venv/bin/python -c "
from aqa.registry import DATASETS
from aqa.runs.store import resolve_runs_dir
e = DATASETS.get('synthetic'); c = e.resolve(e.config_cls(), resolve_runs_dir())
print('demo data:', c.root); e.prepare(c)"
# one malloc arena for the server, so its scoring threads reuse freed memory (aqa.allocator)
eval "$(.venv/bin/python -c "
import os, shlex
from aqa.allocator import server_env
v = server_env(dict(os.environ)).get('GLIBC_TUNABLES')
print('export GLIBC_TUNABLES=' + shlex.quote(v) if v else ':')")"
exec .venv/bin/python -m streamlit run app.py --server.address 127.0.0.1 --server.port "${PORT:-8501}"
