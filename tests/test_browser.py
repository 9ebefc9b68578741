"""End to end in headless Chromium: demo from Home, live chart, stop, Compare, Score.

Starts ``streamlit run app.py`` on a free port against an empty workspace and drives it with
Playwright (Debian's chromium). Screenshots of every page go to ``tests/artifacts/``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import SHARED_DATA, wait_for

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian chromium is not installed at /usr/bin/chromium")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(runs_dir: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, AQA_RUNS_DIR=str(runs_dir), PYTHONUNBUFFERED="1")
    log = open(runs_dir.parent / "streamlit.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                             "--server.port", str(port), "--server.headless", "true",
                             "--server.fileWatcherType", "none"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_for(healthy, timeout=60, what="the streamlit server")
    return proc


@pytest.fixture
def server(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    port = free_port()
    proc = start_app(runs_dir, port)
    yield f"http://127.0.0.1:{port}", runs_dir
    from aqa import jobs
    from aqa.runs import store

    for path in store.list_run_dirs(runs_dir):  # never leave a training process behind
        jobs.stop(path, grace_s=10)
    stop_app(proc)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def shot(page, name: str) -> None:
    page.wait_for_timeout(800)  # let charts finish drawing
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def goto(page, url: str, heading: str) -> None:
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for()


def settled(page, timeout: float = 60_000) -> None:
    """Wait until the script run is over (Streamlit shows its status widget while running)."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=timeout)



def pick(page, label: str, text: str) -> None:
    """Choose the option holding ``text`` in the multiselect ``label``, and wait for its chip.
    Enter picks the highlighted option, so it is pressed only once the typed text has filtered
    the list down to that option; a rerun that swallows the pick is retried (three tries)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator(f'input[aria-label="{label}"]')
    chip = page.get_by_test_id("stMultiSelectTagsContainer").locator("[data-tag]").filter(
        has_text=text)
    for attempt in range(3):
        settled(page)
        if chip.count():  # an earlier try's Enter did pick it
            return
        box.click()
        box.fill(text)
        try:
            page.get_by_role("option").filter(has_text=text).first.wait_for(timeout=15_000)
            box.press("Enter")
            chip.first.wait_for(timeout=15_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def upload_clip(page, clip) -> object:
    """Upload ``clip`` on the Score page until the Score button is enabled (an upload into a
    widget that a rerun replaces is lost: up to three tries); returns the button."""
    from playwright.sync_api import expect

    score = page.get_by_role("button", name="Score", exact=True)
    for attempt in range(3):
        settled(page)
        page.locator("input[type=file]").first.set_input_files(str(clip))
        try:
            expect(score).to_be_enabled(timeout=30_000)  # the upload has reached the server
            return score
        except AssertionError:
            if attempt == 2:
                raise
    return score

def metric_points(page) -> int:
    text = page.get_by_text(re.compile(r"\d+ metric points")).first.inner_text()
    return int(text.split()[0])


def test_demo_live_chart_stop_compare_score(server, page):
    base, runs_dir = server
    goto(page, base, "AQA Studio")
    shot(page, "home_empty")
    page.get_by_role("button", name=re.compile("Start the demo run")).click()

    # lands on the run's page; the chart gains points while the run trains
    page.wait_for_url(re.compile(r".*runs\?run="), timeout=180_000)
    page.get_by_role("heading", name=re.compile(r"^Run ")).wait_for()
    page.get_by_text(re.compile(r"\d+ metric points")).first.wait_for()
    first = wait_for(lambda: metric_points(page) or None, timeout=180, what="a first metric point")
    wait_for(lambda: metric_points(page) > first, timeout=180, what="the chart to gain points")
    assert page.locator(".js-plotly-plot").count() >= 1
    shot(page, "run_live")

    page.get_by_role("button", name=re.compile("Stop$")).click()
    from aqa.jobs.local import run_status
    from aqa.runs import store

    (run_path,) = store.list_run_dirs(runs_dir)
    wait_for(lambda: run_status(run_path) == "stopped", timeout=60, what="the run to stop")
    page.get_by_text("stopped").first.wait_for(timeout=30_000)
    shot(page, "run_stopped")

    goto(page, f"{base}/runs", "Runs")
    shot(page, "runs")
    goto(page, base, "AQA Studio")
    shot(page, "home")
    goto(page, f"{base}/compare", "Compare")
    shot(page, "compare")
    goto(page, f"{base}/launch", "Launch a run")
    shot(page, "launch")
    goto(page, f"{base}/data", "Data")
    page.get_by_role("button", name=re.compile("Run the doctor")).click()
    page.get_by_text(re.compile("Data ready: 240 annotated samples")).wait_for()
    shot(page, "data")

    goto(page, f"{base}/score", "Score a clip")
    clip = SHARED_DATA / "clips" / "mtlaqa_diving_sample_500x280.mp4"
    if not clip.exists():  # ../shared/data is absent: a rendered synthetic dive instead
        clip = runs_dir / "datasets" / "synthetic" / "clips" / "dive_0000.mp4"
    score = upload_clip(page, clip)
    score.click()
    value = page.get_by_test_id("stMetricValue").first
    value.wait_for(timeout=120_000)
    float(value.inner_text())
    shot(page, "score")


def test_a_page_url_opened_first_on_a_fresh_server_runs_through_app_py(server, page):
    """The first visitor of a fresh server opens /score directly: the page comes with app.py's
    sidebar and navigation (no legacy multipage mode: the page folder is not ``pages/``)."""
    base, _ = server
    goto(page, f"{base}/score", "Score a clip")
    page.get_by_test_id("stSidebar").get_by_text("Workspace").wait_for()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Compare").click()
    page.get_by_role("heading", name="Compare").first.wait_for()
    assert page.url.endswith("/compare")
