"""The Score page in headless Chromium (one server): the uploaded real dive plays in the page,
a trim is scored with a pair method (CoRe) and the result shows its range and the voters'
spread; the app menu's theme switch turns the page dark."""

from __future__ import annotations

import re

import pytest

from conftest import SHARED_DATA
from test_app_scorepage import seed_core_run
from test_browser import (CHROMIUM, goto, page, server, settled, shot,  # noqa: F401 (fixtures)
                          upload_clip)

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian chromium is not installed at /usr/bin/chromium")]

CLIP = SHARED_DATA / "clips" / "mtlaqa_diving_sample_500x280.mp4"


def background(page) -> str:
    return page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]'))"
                         ".backgroundColor")


def set_number(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    settled(page)


def test_play_trim_score_spread_and_dark_theme(server, page, synthetic_root):  # noqa: F811
    if not CLIP.exists():
        pytest.fail(f"the real dive clip is not at {CLIP}")
    base, runs_dir = server
    seed_core_run(runs_dir, synthetic_root)
    goto(page, f"{base}/score", "Score a clip")
    page.get_by_text("Check that the clip shows the model's sport").wait_for()  # drawn to the end
    score = upload_clip(page, CLIP)
    video = page.locator("video").first
    video.wait_for()
    page.wait_for_function("v => v.readyState >= 1 && v.duration > 0", arg=video.element_handle(),
                           timeout=30_000)
    assert video.evaluate("v => v.duration") == pytest.approx(2.1, abs=0.15)  # 21 frames, 10 fps

    set_number(page, "Start (s)", "0.5")
    set_number(page, "End (s)", "1.5")
    page.get_by_text(re.compile(r"scoring 0\.50–1\.50 s")).wait_for()
    score.click()
    page.get_by_text("Spread over voters (std)").wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"Scored frames 5–14 of the clip \(0\.50–1\.50 s\)")).wait_for()
    values = page.get_by_test_id("stMain").get_by_test_id("stMetricValue")
    float(values.nth(0).inner_text())
    assert values.nth(1).inner_text().startswith("± ")
    page.get_by_text(re.compile(r"Spread over the 3 voters")).scroll_into_view_if_needed()
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)  # the voters' chart
    shot(page, "score_trim_spread")

    light = background(page)
    page.get_by_test_id("stMainMenu").click()
    page.get_by_test_id("stMainMenuItem-theme-Dark").click()
    page.wait_for_function(f"() => getComputedStyle(document.querySelector('[data-testid=stApp]'))"
                           f".backgroundColor !== '{light}'", timeout=10_000)
    dark = background(page)
    rgb = [int(x) for x in re.findall(r"\d+", dark)[:3]]
    assert sum(rgb) < 3 * 80, dark  # a dark background
    shot(page, "score_dark")
