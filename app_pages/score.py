"""Score: a clip (upload or sample) + a checkpoint -> the score and what it rests on."""

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from aqa.errors import AQAError
from aqa.registry import METHODS
from ui import common, scoring

st.title("Score a clip")
runs_dir = common.runs_dir()
options = scoring.checkpoint_options(runs_dir)
if not options:
    st.info("No checkpoint yet: train a run first (the demo on Home takes a minute or two).")
    st.stop()

labels = list(options)
wanted = st.query_params.get("ckpt")
default = next((i for i, lab in enumerate(labels) if options[lab][0] == wanted), 0)
label = st.selectbox("Checkpoint", labels, index=default, key="ckpt")
ckpt, method = options[label]
program = scoring.reads_features(method)  # GDLT, CoFInAl: a whole program through its features

source = st.radio("Clip", ["Upload a clip", "A sample clip"], horizontal=True, key="source")
upload = sample = None
if source == "Upload a clip":
    upload = st.file_uploader(
        "Video file", type=list(scoring.ALLOWED), key="upload",
        help="Kept in memory while you work with it; the copy the scorer decodes is written to "
             "a private temporary folder and deleted right after scoring.")
    st.caption(f"Accepted: {', '.join('.' + e for e in scoring.ALLOWED)} · up to "
               f"{scoring.max_upload_mb()} MB")
else:
    samples = scoring.sample_clips(runs_dir)
    if samples:
        sample = samples[st.selectbox("Sample clip", list(samples), key="sample")]
    else:
        st.caption("No sample clips found (../shared/data/clips or the rendered synthetic dives).")

info, start_s, end_s, trim_ok = None, None, None, True
if upload or sample:
    try:
        info = scoring.clip_info(upload, sample)
    except AQAError as exc:
        common.show_error(exc)
if info:
    clip_id = upload.file_id if upload else sample
    if st.session_state.get("trim_clip") != clip_id:  # a new clip: the whole of it by default
        st.session_state.update(trim_clip=clip_id, trim_start=0.0,
                                trim_end=float(info["duration"]))
        last = scoring.tasks.get("score")
        if last is not None and not last.running:
            scoring.tasks.clear("score")  # the last result was another clip's
    c1, c2 = st.columns([3, 2])
    with c2:
        if program:
            st.caption("This checkpoint scores the whole program: no trim.")
        else:
            t1, t2 = st.columns(2)
            a = t1.number_input("Start (s)", min_value=0.0, max_value=float(info["duration"]),
                                step=0.1, format="%.2f", key="trim_start")
            b = t2.number_input("End (s)", min_value=0.0, max_value=float(info["duration"]),
                                step=0.1, format="%.2f", key="trim_end")
            if b <= a:
                st.error(f"The end ({b:.2f} s) must come after the start ({a:.2f} s): only the "
                         "frames between them are scored.", icon=":material/error:")
                trim_ok = False
            else:
                start_s, end_s = scoring.trim_seconds(a, b, info["duration"])
                fps = info["fps"] or 1.0
                st.caption(f"{info['duration']:.2f} s, {info['frames']} frames at "
                           f"{info['fps']:g} fps · scoring {a:.2f}–{b:.2f} s "
                           f"(about {int(round((b - a) * fps))} frames); the scorer reads "
                           "only those frames")
    with c1:  # the player starts at the trim (whole seconds: what the player takes)
        st.video(upload if upload else sample,
                 **scoring.player_range(st.session_state["trim_start"],
                                        st.session_state["trim_end"], info["duration"]))

use_dd, difficulty = False, None
if program:
    st.caption("This checkpoint scores a whole program (a skating or gymnastics routine): the "
               "video is cut into clip windows and turned into features with the recipe the "
               "model was trained on, which takes a while for minutes of video.")
else:
    c1, c2 = st.columns([1, 2], vertical_alignment="bottom")
    use_dd = c1.checkbox("I know the difficulty", key="use_dd")
    difficulty = c2.number_input("Difficulty degree", min_value=0.0, max_value=10.0, value=2.0,
                                 step=0.1, disabled=not use_dd, key="dd")

dive_number = None
if method == "fdtsa":  # FineDiving TSA: the official protocol chooses exemplars by dive number
    dive_number = st.text_input(
        "Dive number (optional)", key="dive_number", placeholder="e.g. 107B",
        help="With it, exemplars of the same dive (the official FineDiving protocol); without "
             "it, exemplars of the same difficulty.").strip() or None

tube = None
if method == "tsa":  # TSA attends inside the athlete's tube; an upload has no boxes
    tube = {"Estimated from motion": "auto", "The whole frame": "full"}[st.radio(
        "Athlete tube", ["Estimated from motion", "The whole frame"], horizontal=True,
        key="tube", help="TSA-Net's attention runs inside the athlete's tube. An uploaded clip "
                         "has no boxes: the tube is estimated from motion, or the whole frame.")]

sport, sport_caption = scoring.sport_status(*scoring.checkpoint_dataset(runs_dir, ckpt))
check_sport = st.checkbox("Check that the clip shows the model's sport", value=sport is not None,
                          disabled=sport is None, key="check_sport")
st.caption(sport_caption)

task = scoring.tasks.get("score")
busy = task is not None and task.running  # one scoring at a time per session
if st.button("Score", type="primary", key="score_btn",
             disabled=busy or not ((upload or sample) and info and trim_ok)):
    try:
        the_scorer = scoring.scorer(ckpt)
    except AQAError as exc:
        common.show_error(exc)
        st.stop()
    scoring.start_scoring(
        runs_dir, the_scorer, label, name=upload.name if upload else Path(sample).name,
        data=upload.getvalue() if upload else None, path=sample,
        options=dict(difficulty=difficulty if use_dd else None, tube=tube,
                     dive_number=dive_number, start_s=start_s, end_s=end_s),
        check_sport=check_sport and sport is not None, program=program)


def render(done) -> None:
    result, check = done["result"], done["sport_check"]
    st.markdown(f"**{done['name']}** with {done['checkpoint']}")
    if check is not None and check.ok is False:
        st.warning(check.message, icon=":material/warning:")
        st.dataframe([{"Kinetics-400 class": n, "probability": round(p, 3)}
                      for n, p in check.top[:3]], hide_index=True, key="sport_top")
    c = st.columns(3)
    c[0].metric(f"Predicted {result.target.upper() if program and result.target else 'score'}",
                f"{result.score:.2f}")
    if result.voters:
        c[1].metric("Spread over voters (std)", f"± {result.spread:.2f}",
                    help="the standard deviation of the voters' predictions: how much the "
                         "exemplars disagree")
        c[2].metric("Voters' range", f"{min(result.voters):.2f} – {max(result.voters):.2f}")
    r = result.scored_range
    if r:
        st.caption(f"Scored frames {r['start_frame']}–{r['end_frame'] - 1} of the clip"
                   + (f" ({r['start_s']:.2f}–{r['end_s']:.2f} s)" if r["fps"] else ""))
    if check is not None and check.ok:
        st.caption(f"Sport check: {check.message}")
    for note in result.notes:
        st.caption(note)
    if result.voters:
        st.markdown(f"**Spread over the {len(result.voters)} voters**")
        st.plotly_chart(scoring.voters_figure(result.voters, result.score), key="voters")
    if result.contributions:
        st.markdown("**Where the score comes from, over the program**")
        st.plotly_chart(scoring.timeline_figure(result.contributions), key="timeline")
        st.dataframe(scoring.grade_table(result.contributions), hide_index=True)
    if result.frames is not None:
        st.markdown(f"**Frames the model saw** ({result.frames_used} of {result.source_frames})")
        step = max(1, len(result.frames) // 8)
        picks = list(range(0, len(result.frames), step))[:8]
        st.image([result.frames[i] for i in picks], width=96,
                 caption=[f"frame {result.frame_indices[i]}" for i in picks])
    if result.transitions:
        st.markdown("**Predicted step transitions**")
        st.plotly_chart(scoring.step_timeline(result.transitions), key="steps")
    if result.exemplars:
        st.markdown("**Exemplars used and the difference predicted against each**"
                    + (f" (chosen by {result.protocol.replace('_', ' ')})" if result.protocol else ""))
        st.dataframe(pd.DataFrame(scoring.exemplar_rows(result.exemplars)), hide_index=True,
                     key="exemplars")
    if result.nearest:
        st.markdown("**Closest training clips** (feature distance, any group)")
        st.dataframe(pd.DataFrame(scoring.exemplar_rows(result.nearest)), hide_index=True,
                     key="nearest")
    if result.distribution:
        st.markdown("**Score distribution**")
        fig = go.Figure(go.Bar(y=result.distribution))
        fig.update_layout(height=240, margin=dict(l=10, r=10, t=10, b=10),
                          xaxis_title="score bin", yaxis_title="probability")
        st.plotly_chart(fig, key="dist")
    st.markdown("**Timings**")
    st.dataframe(pd.DataFrame([{"stage": k, "seconds": round(v, 3)}
                               for k, v in result.timings.items()]), hide_index=True)


scoring.tasks.show("score", render, error_hint="Re-encode the clip as H.264 MP4 and try again.")

st.subheader("History")
history = scoring.read_history(runs_dir)
if history:
    st.dataframe(pd.DataFrame([{"when": common.fmt_time(h["t"]), "clip": h["clip"],
                                "score": round(h["score"], 2), "difficulty": h.get("difficulty"),
                                "checkpoint": h["checkpoint"]} for h in history]),
                 hide_index=True, width="stretch")
else:
    st.caption("No clip scored yet.")

st.subheader("Head to head")
pair = METHODS.get(method).sample_kind != "single"
if not pair:
    st.info(f"Comparing two clips (\"which dive is better, and by how much\") needs a pair "
            f"method such as CoRe, which predicts the difference between two dives. This "
            f"checkpoint's method, {method or '?'}, scores one clip at a time.", icon=":material/info:")
c1, c2 = st.columns(2)
clip_a = c1.file_uploader("Clip A", type=list(scoring.ALLOWED), disabled=not pair, key="h2h_a")
clip_b = c2.file_uploader("Clip B", type=list(scoring.ALLOWED), disabled=not pair, key="h2h_b")
if st.button("Compare A and B", disabled=not (pair and clip_a and clip_b), key="h2h_btn"):
    try:
        with scoring.saved_upload(clip_a.name, clip_a.getbuffer()) as a, \
                scoring.saved_upload(clip_b.name, clip_b.getbuffer()) as b:
            dd = difficulty if use_dd else None
            verdict = scoring.scorer(ckpt).compare(a, b, dd, dd)
        st.success(verdict["summary"])
        m = st.columns(3)
        m[0].metric("A", f"{verdict['score_a']:.2f}")
        m[1].metric("B", f"{verdict['score_b']:.2f}")
        m[2].metric("B − A", f"{verdict['difference']:+.2f}")
        for note in verdict.get("notes", []):
            st.caption(note)
    except AQAError as exc:
        common.show_error(exc)
