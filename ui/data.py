"""Showing a data doctor report (``aqa.data.doctor``)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from aqa.data import doctor


@st.cache_data(ttl=30, show_spinner="checking the data root…")
def quick_check(dataset: str, root: str, runs_dir: str) -> doctor.DoctorReport:
    """A doctor report opening at most 16 videos (the Data page runs the full check)."""
    return doctor.check(dataset, root or None, runs_dir, max_probe=16)


def verdict(report: doctor.DoctorReport, will_prepare: bool = False) -> None:
    """One line: ready, or what is wrong and the command that fixes it."""
    if report.ok:
        st.success(f"Data ready: {report.messages[0]}", icon=":material/check_circle:")
        return
    if will_prepare and not report.found:
        st.info(f"Not rendered yet at {report.root}: the run renders it when it starts "
                "(or render it now on the Data page).", icon=":material/info:")
        return
    st.error("Data not ready: " + "; ".join(report.messages), icon=":material/medical_services:")
    if report.fix:
        st.caption("Suggested fix:")
        st.code(report.fix, language="bash")


def full_report(report: doctor.DoctorReport) -> None:
    verdict(report)
    st.caption(f"Data root: {report.root} · {report.checked_files} file(s) opened")
    if report.samples:
        st.dataframe(pd.DataFrame([
            {"split": s, "samples": n, "min score": report.ranges.get(s, (None, None))[0],
             "max score": report.ranges.get(s, (None, None))[1]}
            for s, n in report.samples.items()]), hide_index=True)
    if report.missing_count:
        st.warning(f"{report.missing_count} missing file(s); the first: "
                   + ", ".join(report.missing))
    if report.corrupt_count:
        st.warning(f"{report.corrupt_count} unreadable file(s):\n\n"
                   + "\n".join(f"- {c}" for c in report.corrupt))
    if report.invalid_count:
        st.warning(f"{report.invalid_count} sample(s) whose files do not match the annotation:\n\n"
                   + "\n".join(f"- {c}" for c in report.invalid))
    for m in report.messages[1:]:
        st.write(f"- {m}")
