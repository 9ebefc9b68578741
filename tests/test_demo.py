"""The demo as the README promises it: under five minutes on two CPU cores, rho >= 0.7."""

import json
import subprocess
import sys
import time

import pytest

from aqa import metrics
from aqa.data.folder import read_score_csv
from aqa.scoring import Scorer
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_demo_trains_a_model_that_ranks_held_out_dives(tmp_path):
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "aqa", "demo", "--runs-dir", str(tmp_path),
                           "--follow"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    elapsed = time.time() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 300, f"the demo took {elapsed:.0f} s"
    (run,) = [p for p in tmp_path.iterdir() if (p / "run.json").exists()]
    root = json.loads((run / "run.json").read_text())["config"]["data"]["root"]
    held_out = [s for s in read_score_csv(root, "scores.csv", 0.2, 0) if s.split == "test"]
    scorer = Scorer.from_checkpoint(run / "checkpoints" / "best.pt")
    pred = [scorer.score(s.video).score for s in held_out]
    rho = metrics.spearman(pred, [s.score for s in held_out])
    print(f"demo: {elapsed:.0f} s, held-out rho {rho:.3f} on {len(held_out)} clips")
    assert rho >= 0.7
