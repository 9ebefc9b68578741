"""Starting runs from the app: the demo run, with the dataset rendered under a progress bar."""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from aqa import jobs
from aqa.cli.train import DEMO_DATASET, DEMO_METHOD, DEMO_OVERRIDES
from aqa.config import build_run_config
from aqa.registry import DATASETS


def form_token(name: str) -> str:
    """A token for one rendering of a form: a second submit of the same form reuses it, so
    ``aqa.jobs.submit(submission_id=...)`` returns the first run instead of starting a copy."""
    key = f"token:{name}"
    if key not in st.session_state:
        st.session_state[key] = uuid.uuid4().hex
    return st.session_state[key]


def new_token(name: str) -> None:
    st.session_state.pop(f"token:{name}", None)


def render_synthetic(root: str | Path, num_clips: int, seed: int, label: str) -> None:
    """Render the synthetic dives at ``root`` (resumable) with a progress bar."""
    from aqa.data.synthetic import render_dataset

    bar = st.progress(0.0, text=label)

    def progress(done: int, total: int) -> None:
        bar.progress(done / total, text=f"{label}: clip {done}/{total}")

    render_dataset(root, num_clips=num_clips, seed=seed, progress=progress)
    bar.empty()


def start_demo(runs_dir: Path, submission_id: str) -> Path:
    """Render the synthetic dives (if needed) and submit the demo run of ``python -m aqa demo``."""
    cfg = build_run_config(DEMO_METHOD, DEMO_DATASET, overrides=DEMO_OVERRIDES)
    data = DATASETS.get(DEMO_DATASET).resolve(cfg.data, runs_dir)
    render_synthetic(data.root, data.num_clips, data.render_seed, "rendering the synthetic dives")
    return jobs.submit(runs_dir, DEMO_METHOD, DEMO_DATASET, overrides=DEMO_OVERRIDES,
                       argv=["app", "demo"], submission_id=submission_id)


def slurm_defaults(runs_dir: Path) -> dict:
    """The cluster defaults of the workspace config (``runs/workspace.toml``, [slurm])."""
    from aqa.errors import AQAError
    from aqa.jobs import workspace
    try:
        return workspace.load(runs_dir).get("slurm", {})
    except AQAError:
        return {}
