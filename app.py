"""AQA Studio: ``streamlit run app.py``. Page config, navigation over ``app_pages/``, the sidebar."""

import streamlit as st

st.set_page_config(page_title="AQA Studio", page_icon="🏊", layout="wide")

from ui import common  # noqa: E402  (after set_page_config)

pages = [
    st.Page(common.PAGES["home"], title="Home", icon=":material/home:", default=True),
    st.Page(common.PAGES["launch"], title="Launch", icon=":material/rocket_launch:"),
    st.Page(common.PAGES["runs"], title="Runs", icon=":material/monitoring:"),
    st.Page(common.PAGES["compare"], title="Compare", icon=":material/compare_arrows:"),
    st.Page(common.PAGES["score"], title="Score", icon=":material/sports_score:"),
    st.Page(common.PAGES["data"], title="Data", icon=":material/dataset:"),
]
page = st.navigation(pages)
common.sidebar()
page.run()
