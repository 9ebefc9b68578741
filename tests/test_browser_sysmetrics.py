"""In headless Chromium (one server): a run's page draws the System section and the predictions
charts with a confusion matrix, and its download buttons hand over the files' exact bytes."""

from __future__ import annotations

import re

import pytest

from aqa.evaluate import write_predictions
from aqa.runs import store
from aqa.runs.events import EVENTS_FILE, EventWriter
from test_app import seed_run
from test_browser import goto, page, server, settled, shot  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_run_page_system_charts_and_downloads(server, page, synthetic_root):  # noqa: F811
    base, runs_dir = server
    path = seed_run(runs_dir, "finished", synthetic_root)
    ev = EventWriter(path / EVENTS_FILE)
    for step in (10, 20):
        for name, value in (("lr", 1e-3), ("step_time", 0.4), ("data_wait", 0.1),
                            ("cpu_rss", 950.0)):
            ev.metric(name, value, epoch=step // 10, step=step, split="sys")
    ev.close()
    # the best epoch's test predictions of a classifier: labels, probabilities, classes
    write_predictions(path / "predictions" / "test_epoch_002.csv",
                      [("a", 0.0, 0.2), ("b", 1.0, 0.8), ("c", 1.0, 0.3), ("d", 0.0, 0.6)],
                      [0, 1, 0, 1])

    goto(page, f"{base}/runs?run={path.name}", f"Run {path.name}")
    settled(page)
    page.get_by_text("System", exact=True).wait_for()
    for title in ("learning rate", "CPU RSS of the training process (MiB)",
                  "confusion matrix · test, epoch 2 (best)", "error · test, epoch 2 (best)"):
        page.locator(".gtitle", has_text=title).first.wait_for()
    assert page.locator(".gtitle", has_text=re.compile("^GPU")).count() == 0
    page.locator(".gtitle", has_text="learning rate").first.scroll_into_view_if_needed()
    shot(page, "run_system")
    page.get_by_role("button", name=store.RUN_JSON).scroll_into_view_if_needed()
    shot(page, "run_artifacts")

    for label, want in ((store.RUN_JSON, path / store.RUN_JSON),
                        ("Download CSV", path / "predictions" / "test_epoch_002.csv")):
        with page.expect_download() as info:
            page.get_by_role("button", name=label).click()
        assert open(info.value.path(), "rb").read() == want.read_bytes(), label
