"""AppTest: the launch form's "Estimate memory" runs the real plan for the form's values."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from aqa.runs import store
from conftest import finish_task

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "regression:synthetic:tiny3d:None"
ESTIMATE = "FormSubmitter:launch_form-Estimate memory"


def launch_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/launch.py")
    at.run()
    at.selectbox(key="method").set_value("regression").run()
    return at


def test_estimate_memory_shows_the_measured_plan(runs_dir):
    at = launch_page()
    assert not at.dataframe  # nothing before the button
    for key, value in {"data.num_frames": 8, "data.frame_size": 32, "train.batch_size": 2}.items():
        widget = at.get_by_key(f"{PREFIX}:{key}") if hasattr(at, "get_by_key") else None
        widget = widget or at.text_input(key=f"{PREFIX}:{key}")
        widget.set_value(value if widget.type == "number_input" else str(value))
    finish_task(at.button(key=ESTIMATE).click().run(), "memory")  # it runs in the background
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert list(table["option"]) == ["as configured", "as configured +accum x2", "+freeze_bn",
                                     "+freeze_bn +accum x2"]
    assert list(table["batch"]) == [2, 1, 2, 1]  # the form's batch size reached the plan
    assert (table["CPU MB"] >= 0).all() and (table["step s"] > 0).all()
    captions = " ".join(c.value for c in at.caption)
    assert "8 frames at 32 px on cpu" in captions and "not a GPU number" in captions
    assert store.list_run_dirs(runs_dir) == []  # estimating launches nothing


def test_estimate_memory_shows_a_bad_value(runs_dir):
    at = launch_page()
    at.text_input(key=f"{PREFIX}:optim.lr").set_value("-1")
    at.button(key=ESTIMATE).click().run()
    assert not at.exception
    assert at.error[-1].value == "No estimate: optim.lr must be positive"
