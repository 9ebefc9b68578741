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
exec .venv/bin/python -m streamlit run app.py --server.address 127.0.0.1 --server.port "${PORT:-8501}"
