"""Real browser (headless Chromium, one Streamlit server): the Runs page opened with a filter in
its URL shows only the matching runs, a tag added from the page is stored and shown, and the
config diff and parallel coordinates draw."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from playwright.sync_api import expect

from aqa.runs import meta
from conftest import wait_for
from hygiene_fixture import seed
from test_browser import CHROMIUM, goto, page, pick, server, settled, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian chromium is not installed at /usr/bin/chromium")]


def grid_text(page) -> list[str]:
    """The runs table's header and cells (the data grid's accessible table holds them)."""
    return [c.strip() for c in page.get_by_test_id("stDataFrame").first.locator(
        "th, td, [role=gridcell], [role=columnheader]").all_inner_texts()]


def grid_ids(page) -> set[str]:
    return {c for c in grid_text(page) if re.fullmatch(r"\d{8}-\d{6}-\d{3}-\w+-\w+", c)}


def test_url_filter_and_tag_from_the_ui(server, page):
    base, runs_dir = server
    low, high = seed(runs_dir, lr=1e-4, rho=0.95), seed(runs_dir, lr=1e-2, rho=0.6)
    other = seed(runs_dir, method="tpt", lr=5e-4, rho=0.92)

    where = quote("optim.lr<1e-3 and method==core")
    goto(page, f"{base}/runs?where={where}&cols=optim.lr", "Runs")
    page.get_by_text("1 of 3 runs").wait_for()
    expect(page.locator('input[aria-label="Filter"]')).to_have_value(
        "optim.lr<1e-3 and method==core", timeout=30_000)
    wait_for(lambda: grid_ids(page) == {low.name}, timeout=30, what="the grid to show one run")
    assert "optim.lr" in grid_text(page)  # the chosen column
    shot(page, "runs_filtered")

    # tag the run shown from the page: stored in its meta.json, shown in the table
    page.get_by_text("Tag, archive or delete runs").click()
    pick(page, "Runs", low.name)
    tag = page.locator('input[aria-label="Tag"]')
    tag.fill("fav")
    tag.press("Enter")
    settled(page)
    page.get_by_role("button", name="Add tag").click()
    wait_for(lambda: meta.read_meta(low)["tags"] == ["fav"], timeout=30, what="the tag stored")
    wait_for(lambda: "fav" in grid_text(page), timeout=30, what="the tag in the table")
    assert meta.read_meta(high)["tags"] == meta.read_meta(other)["tags"] == []
    shot(page, "runs_tagged")

    # the filter cleared from the page (and the URL): the diff and the parallel coordinates
    where_box = page.locator('input[aria-label="Filter"]')
    where_box.fill("")
    where_box.press("Enter")
    page.get_by_text("3 of 3 runs").wait_for()
    assert "where=" not in page.url
    page.get_by_text("Config diff of two runs").click()
    page.get_by_text(re.compile(r"^\d+ differing key\(s\)$")).wait_for()
    page.get_by_text("Parallel coordinates: hyperparameters").click()
    page.locator(".js-plotly-plot .parcoords").first.wait_for()
    shot(page, "runs_diff_parallel")
