"""Data: pick a dataset and root, run the doctor, prepare the data with a progress bar."""

import streamlit as st

from aqa.data import doctor
from aqa.errors import AQAError
from aqa.registry import DATASETS
from ui import common, data, jobs, tasks

st.title("Data")
runs_dir = common.runs_dir()
names = DATASETS.names()
c1, c2 = st.columns([1, 2])
dataset = c1.selectbox("Dataset type", names, index=names.index("synthetic")
                       if "synthetic" in names else 0, key="ds",
                       format_func=lambda d: f"{d} — {DATASETS.get(d).description}")
root = c2.text_input("Data root", key="ds_root", placeholder="empty = the dataset's default location")

c = st.columns([1, 1, 3])
if c[0].button("Run the doctor", icon=":material/medical_services:", type="primary", key="doctor"):
    def run_doctor(report, dataset=dataset, root=root):  # in the background: a bar, file by file
        return doctor.check(dataset, root or None, runs_dir, progress=lambda n, total: report(
            *tasks.progress_text(n, total, "samples checked")))

    tasks.start("doctor", run_doctor, f"Doctor on {dataset}", dataset=dataset, root=root)
doctor_task = tasks.get("doctor")
if doctor_task is not None and doctor_task.meta == {"dataset": dataset, "root": root}:
    tasks.show("doctor", data.full_report)

entry = DATASETS.get(dataset)
PREPARE = {"synthetic": "render the synthetic dives",
           "mtl_aqa": "extract frames from videos/ into new/new_total_frames_256s/ (ffmpeg)"}
can_prepare = dataset in PREPARE
if c[1].button("Prepare", key="prepare", disabled=not can_prepare,
               help=PREPARE.get(dataset, "this dataset is brought by you; the doctor says what "
                                         "is missing")):
    try:
        cfg = entry.config_cls()
        if root:
            cfg.root = root
        cfg = entry.resolve(cfg, runs_dir)
        if dataset == "synthetic":
            jobs.render_synthetic(cfg.root, cfg.num_clips, cfg.render_seed,
                                  f"rendering {cfg.num_clips} synthetic dives into {cfg.root}")
        else:
            from pathlib import Path

            from aqa.data.prepare import extract_frames, mtl_aqa_jobs
            bar = st.progress(0.0, text="extracting frames…")
            result = extract_frames(mtl_aqa_jobs(Path(cfg.root)), progress=lambda n, total:
                                    bar.progress(n / total, text=f"extracted {n} of {total} videos"))
            bar.progress(1.0, text=f"{len(result.done)} extracted, {len(result.skipped)} already "
                                   f"there, {len(result.failed)} failed")
            for failure in result.failed:
                st.error(failure)
    except (AQAError, ValueError) as exc:
        common.show_error(exc)
    else:
        st.success(f"Prepared {cfg.root}.")
        data.full_report(doctor.check(dataset, cfg.root, runs_dir))
if not can_prepare:
    st.caption(f"Preparing {dataset}: " + doctor.prepare_command(dataset, root or "<root>"))
