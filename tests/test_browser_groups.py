"""In headless Chromium: the Compare page shows a group of runs as one row (mean ± std, n
finished / n), its members on demand, and the reproducibility ledger. One server, written runs
(nothing trains)."""

from __future__ import annotations

import pytest

from test_browser import goto, page, server, settled, shot  # noqa: F401  (fixtures)
from test_groups import seed_group

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GID = "g-20261206-120000-abcd"


def test_compare_group_row_members_and_ledger(server, page):  # noqa: F811
    base, runs_dir = server
    seed_group(runs_dir, [0.6, 0.8], unfinished=1, gid=GID)
    goto(page, f"{base}/compare", "Compare")
    settled(page)
    # the group is chosen by default, labelled with how many of its runs finished
    page.get_by_text(f"{GID} · seeds · regression · synthetic · 2/3 finished").first.wait_for()
    page.get_by_role("heading", name="Reproducibility ledger").wait_for()
    settled(page)
    # the tables are drawn on a canvas: read them from their Markdown source
    page.get_by_text("Markdown / LaTeX source").click()
    code = page.locator("[data-testid=stMarkdownPre]", has_text=f"group {GID} · seeds · 2/3 finished")
    table = code.first.inner_text()
    assert "| 2/3 | 0.7000 ± 0.1414 |" in table
    assert page.get_by_text(f"Member runs of {GID} (2/3 finished)").count()
    page.get_by_text("Ledger source (Markdown)").click()
    ledger = page.locator("[data-testid=stMarkdownPre]", has_text="public issue: TPT").first.inner_text()
    assert "| 0.9581 |" in ledger and f"group {GID}" in ledger
    shot(page, "compare_groups")
