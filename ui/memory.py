"""The memory estimate on the launch form: ``aqa.plan`` for the form's config, as a table."""

from __future__ import annotations

import streamlit as st

from aqa.config import build_run_config
from aqa.errors import AQAError
from aqa.plan import plan_for
from ui import tasks


def estimate(method: str, dataset: str, overrides: list[str], gpu_arg: str | None,
             inventory: list[dict]) -> None:
    """Start the dry run for the form's values in the background (:mod:`ui.tasks`); ``panel``
    shows its progress, configuration by configuration, then the plan or the reason it cannot."""
    try:
        cfg = build_run_config(method, dataset, overrides=overrides)
    except AQAError as exc:
        st.error(f"No estimate: {exc}", icon=":material/error:")
        return

    def work(report):
        return plan_for(cfg, gpu_arg, inventory, progress=lambda i, n, name: report(
            i / max(1, n), f"measuring a few training steps ({name}, {i + 1 if i < n else n} "
                           f"of {n} configurations, random weights)"))

    tasks.start("memory", work, f"Memory estimate of {method} on {dataset}")


def panel() -> None:
    """The memory estimate of this session: its progress while it runs, then the plan."""
    tasks.show("memory", show, error_hint="No estimate.")


def show(result: dict) -> None:
    unit = "GPU MB" if result["device"].startswith("cuda") else "CPU MB"
    st.subheader("Memory estimate")
    head = (f"{result['method']}, batch {result['batch_size']} x accum {result['accum_steps']}, "
            f"{result['frames']} frames at {result['frame_size']} px on {result['device']}; "
            f"{result['module_sizes']['total']:,} parameters")
    if result["budget_mb"] is not None:
        head += f"; {result['budget_mb']:.0f} MB free on the chosen GPU(s)"
    st.caption(head)
    rows = [{"option": r["option"], "batch": r["batch_size"], "accum": r["accum_steps"],
             unit: r["peak_mb"], "step s": r["step_s"],
             "fits": {True: "yes", False: "no", None: "-"}[r["fits"]]} for r in result["rows"]]
    st.dataframe(rows, hide_index=True, key="memory_plan")
    if result["budget_mb"] is not None:
        if result["fitting"]:
            st.success("Fits: " + ", ".join(result["fitting"]), icon=":material/memory:")
        else:
            st.warning("None of these fits: lower data.frame_size or data.num_frames, or use "
                       "more GPUs", icon=":material/memory:")
    for o in result["options"]:
        if o["status"] != "apply":
            state = "already on" if o["status"] == "on" else "n/a"
            st.caption(f"{o['name']}: {state} — {o['note']}")
    for note in result["notes"]:
        st.caption(note)
