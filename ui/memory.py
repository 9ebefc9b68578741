"""The memory estimate on the launch form: ``aqa.plan`` for the form's config, as a table."""

from __future__ import annotations

import streamlit as st

from aqa.config import build_run_config
from aqa.errors import AQAError
from aqa.plan import plan_for


def estimate(method: str, dataset: str, overrides: list[str], gpu_arg: str | None,
             inventory: list[dict]) -> None:
    """Run the dry run for the form's values and show the plan (or the reason it cannot)."""
    try:
        cfg = build_run_config(method, dataset, overrides=overrides)
        with st.spinner("Measuring a few training steps of this config (random weights) ..."):
            result = plan_for(cfg, gpu_arg, inventory)
    except AQAError as exc:
        st.error(f"No estimate: {exc}", icon=":material/error:")
        return
    show(result)


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
