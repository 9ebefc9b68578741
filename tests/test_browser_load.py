"""Several people at once, in headless Chromium: five sessions score a clip at the same time
while a run launched from the app trains and its chart ticks; then the app restarts mid-run.

One Streamlit server (restarted once), one browser with five contexts. The run is launched
from the app's Launch form (prefilled from a seeded run: the demo's tiny model on a few
synthetic dives), so it is the server's child that must survive the restart. The five
sessions click Score back to back, so the server scores for all five at once on the shared
model: each must get the same score, and the server's log must show one model load.
"""

from __future__ import annotations

import re
import urllib.parse

import pytest

from conftest import shared_clip, wait_for
from test_app import seed_run
from test_browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, free_port, metric_points, settled,
                          start_app, stop_app)

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian chromium is not installed at /usr/bin/chromium")]

SESSIONS = 5


def predicted(page) -> float:
    metric = page.get_by_test_id("stMetric").filter(has_text="Predicted score")
    metric.wait_for(timeout=120_000)
    return float(metric.get_by_test_id("stMetricValue").inner_text())


def sidebar_running(page) -> str:
    metric = page.get_by_test_id("stSidebar").get_by_test_id("stMetric").filter(has_text="running")
    return metric.get_by_test_id("stMetricValue").inner_text()


def test_five_sessions_score_while_a_run_trains_and_the_app_restarts(tmp_path, synthetic_root):
    from playwright.sync_api import expect, sync_playwright

    from aqa import jobs
    from aqa.runs import store
    from aqa.runs.status import run_status

    clip = shared_clip()  # the real dive clip, offered by the Score page as a sample
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    template = seed_run(runs_dir, "finished", synthetic_root)  # tiny3d, 8 frames of 32 px
    ckpt = template / "checkpoints" / "best.pt"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = runs_dir.parent / "streamlit.log"
    server = start_app(runs_dir, port)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            contexts = [browser.new_context(viewport={"width": 1200, "height": 900})
                        for _ in range(SESSIONS)]
            for c in contexts:
                c.set_default_timeout(60_000)

            # a run launched from the app (the server's child), long enough to outlive a restart
            chart = contexts[0].new_page()
            chart.goto(f"{base}/launch?from={template.name}")
            form = chart.get_by_test_id("stForm")
            form.wait_for(timeout=120_000)
            form.get_by_role("tab", name="Training").click()
            for key, value in (("train.epochs", "200"), ("train.log_every", "1")):
                field = form.get_by_label(key, exact=True)
                field.fill(value)
                field.press("Tab")  # committed on blur (Enter would submit the form)
            form.get_by_role("button", name="Launch", exact=True).click()
            chart.wait_for_url(re.compile(r".*runs\?run="), timeout=120_000)
            run_id = urllib.parse.parse_qs(urllib.parse.urlparse(chart.url).query)["run"][0]
            run_path = store.run_dir(runs_dir, run_id)
            chart.get_by_text(re.compile(r"\d+ metric points")).first.wait_for()

            # five sessions on the Score page, the seeded checkpoint, the real dive clip
            pages = [c.new_page() for c in contexts]
            for pg in pages:
                pg.goto(f"{base}/score?ckpt={urllib.parse.quote(str(ckpt))}")
            for pg in pages:
                pg.get_by_text("A sample clip").click()
                expect(pg.get_by_role("button", name="Score", exact=True)).to_be_enabled(timeout=60_000)
                settled(pg)
            before = wait_for(lambda: metric_points(chart) or None, timeout=180,
                              what="the launched run's first metric point")
            for pg in pages:  # back to back: the server scores for the five at once
                pg.get_by_role("button", name="Score", exact=True).click()
            scores = [predicted(pg) for pg in pages]
            assert len(set(scores)) == 1, scores  # one model, one clip: one score, five times
            pages[0].screenshot(path=str(ARTIFACTS / "load_score.png"), full_page=True)
            loads = [line for line in log.read_text(errors="replace").splitlines()
                     if "loaded the checkpoint" in line and str(ckpt) in line]
            assert len(loads) == 1, loads  # one copy of the model for the five sessions
            ticking = wait_for(lambda: (metric_points(chart) > before) and metric_points(chart),
                               timeout=120, what="the chart to tick while the sessions score")
            chart.screenshot(path=str(ARTIFACTS / "load_chart.png"), full_page=True)

            # the app restarts mid-run: the run trains on, and every page is right at once
            stop_app(server)
            assert run_status(run_path) == "running"
            server = start_app(runs_dir, port)
            chart.reload()
            chart.get_by_text(re.compile(r"\d+ metric points")).first.wait_for()
            assert metric_points(chart) >= ticking  # nothing lost
            status = chart.get_by_test_id("stMetric").filter(has_text="status")
            expect(status.get_by_test_id("stMetricValue")).to_contain_text("running", timeout=60_000)
            wait_for(lambda: metric_points(chart) > ticking, timeout=120,
                     what="the chart to tick after the restart")
            assert sidebar_running(chart) == "1"
            home = pages[1]
            home.goto(base)
            home.get_by_role("heading", name="AQA Studio").first.wait_for()
            expect(home.get_by_test_id("stSidebar").get_by_text(
                re.compile(r"2 run\(s\) · 1 finished"))).to_be_visible(timeout=60_000)
            history = store.resolve_runs_dir(runs_dir) / ".app" / "score_history.jsonl"
            assert len(history.read_text().splitlines()) == SESSIONS  # every result kept
            chart.screenshot(path=str(ARTIFACTS / "load_after_restart.png"), full_page=True)
            browser.close()
    finally:
        for path in store.list_run_dirs(runs_dir):  # never leave a training process behind
            jobs.stop(path, grace_s=10)
        stop_app(server)
