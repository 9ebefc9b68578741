"""AppTest of the Runs page's filter and columns in the URL, run hygiene from the run page and
the picked-runs actions, the config diff and the parallel-coordinates figure."""

from __future__ import annotations

import pytest

from aqa.runs import index, meta
from hygiene_fixture import seed
from test_app import app, no_exception


@pytest.fixture
def three(runs_dir):
    runs = {"low": seed(runs_dir, lr=1e-4, rho=0.95), "high": seed(runs_dir, lr=1e-2, rho=0.6),
            "tpt": seed(runs_dir, method="tpt", lr=5e-4, rho=0.92, backbone="tiny3d")}
    index.sync(runs_dir)
    return runs


def table_ids(at) -> list[str]:
    return sorted(at.dataframe[0].value["id"])


def test_url_filter_and_columns_reproduce_the_view(three):
    at = app("runs", where="optim.lr<1e-3 and rho>0.9", cols="optim.lr,model.*")
    no_exception(at)
    assert table_ids(at) == sorted([three["low"].name, three["tpt"].name])
    frame = at.dataframe[0].value
    assert list(frame.columns[8:11]) == ["optim.lr", "model.backbone", "model.dropout"]
    assert sorted(frame["optim.lr"]) == [1e-4, 5e-4]
    # changing the widgets writes the URL back
    at.text_input(key="f_where").set_value("method==core").run()
    assert at.query_params["where"] == "method==core" and at.query_params["cols"] == "optim.lr,model.*"
    assert table_ids(at) == sorted([three["low"].name, three["high"].name])
    at.text_input(key="f_where").set_value("").run()
    assert "where" not in at.query_params and len(table_ids(at)) == 3


def test_bad_filter_says_why_and_shows_nothing(three):
    at = app("runs", where="rho >")
    no_exception(at)
    assert "expected a value" in at.error[0].value and not at.dataframe


def test_archived_hidden_unless_toggled_and_tags_filter(three):
    meta.update_meta(three["high"], archived=True)
    meta.update_meta(three["tpt"], add_tag="fav")
    at = app("runs")
    no_exception(at)
    assert three["high"].name not in table_ids(at)
    assert any("(1 archived hidden)" in c.value for c in at.caption)
    at = app("runs", archived="1", where="tags contains fav")
    assert table_ids(at) == [three["tpt"].name]
    assert at.dataframe[0].value["tags"].tolist() == ["fav"]


def opened(at, *keys: str):
    """The Runs page with its lazy sections ``keys`` open (as a click on each does)."""
    for key in keys:
        at.session_state[key] = True
    return at.run()


def test_the_runs_pages_pickers_are_built_only_when_their_section_is_opened(three):
    at = app("runs")
    no_exception(at)
    assert [e.label for e in at.expander] == [
        "Open a run by name", "Tag, archive or delete runs", "Config diff of two runs",
        "Parallel coordinates: hyperparameters against a metric"]
    keys = {w.key for w in [*at.selectbox, *at.multiselect]}
    assert not keys & {"runs_open", "h_pick", "diff_a", "diff_b", "pc_metric", "pc_dims"}
    opened(at, "x_open")
    assert sorted(at.selectbox(key="runs_open").options) == sorted(p.name for p in three.values())
    assert "h_pick" not in {w.key for w in at.multiselect}  # the others stay closed


def test_picked_runs_tag_archive_delete(three):
    at = opened(app("runs"), "x_hygiene")
    at.multiselect(key="h_pick").set_value([three["low"].name, three["high"].name]).run()
    at.text_input(key="h_many_tag").set_value("sweep").run()
    at.button(key="h_many_tag_add").click().run()
    no_exception(at)
    assert meta.read_meta(three["low"])["tags"] == ["sweep"] == meta.read_meta(three["high"])["tags"]
    at.multiselect(key="h_pick").set_value([three["high"].name]).run()
    assert at.button(key="h_many_delete").disabled  # not before the confirmation
    at.checkbox(key="h_many_sure").check().run()
    at.button(key="h_many_delete").click().run()
    no_exception(at)
    assert not three["high"].exists() and len(table_ids(at)) == 2
    assert not at.checkbox(key="h_many_sure").value  # the next delete asks again


def test_run_page_name_note_tag_and_running_run_not_deletable(runs_dir):
    path = seed(runs_dir)
    live = seed(runs_dir, running=True)
    index.sync(runs_dir)
    at = app("runs", run=path.name)
    no_exception(at)
    at.text_input(key="h_name").set_value("baseline A")
    at.text_input(key="h_note").set_value("first try")
    at.button(key="h_save").click().run()
    at.text_input(key="h_one_tag").set_value("fav").run()
    at.button(key="h_one_tag_add").click().run()
    no_exception(at)
    assert meta.read_meta(path) == {"name": "baseline A", "tags": ["fav"], "note": "first try",
                                    "archived": False}
    assert at.text_input(key="h_name").value == "baseline A"
    at = app("runs", run=live.name)
    no_exception(at)
    assert at.checkbox(key="h_one_sure").disabled and at.button(key="h_one_delete").disabled
    assert any("Stop" in c.value and "first" in c.value for c in at.caption)


def test_config_diff_and_parallel_coordinates(three):
    from ui import explore

    at = opened(app("runs", cols="optim.lr,train.batch_size"), "x_diff", "x_parallel")
    no_exception(at)
    at.selectbox(key="diff_a").set_value(three["low"].name)
    at.selectbox(key="diff_b").set_value(three["tpt"].name).run()
    diff = at.dataframe[1].value  # after the runs table
    assert diff["key"].tolist() == ["method", "model.backbone", "optim.lr"]
    assert diff.set_index("key").loc["model.backbone"].tolist() == ["i3d", "tiny3d"]
    assert at.selectbox(key="pc_metric").value == "rho"
    assert at.multiselect(key="pc_dims").value == ["optim.lr", "train.batch_size"]

    records = [{"optim.lr": 1e-4, "method": "core", "rho": 0.9},
               {"optim.lr": 1e-2, "method": "tpt", "rho": 0.5}, {"optim.lr": 1e-3}]
    fig = explore.parallel_figure(records, ["optim.lr", "method"], "rho")
    (pc,) = fig.data
    assert pc.type == "parcoords" and [d.label for d in pc.dimensions] == ["optim.lr", "method", "rho"]
    assert list(pc.dimensions[0].values) == [1e-4, 1e-2]  # the run without rho is left out
    assert list(pc.dimensions[1].ticktext) == ["core", "tpt"] and list(pc.line.color) == [0.9, 0.5]


def test_homes_picker_offers_the_runs_the_page_lists(runs_dir):
    best = seed(runs_dir, rho=0.99)  # the oldest: only in "Best result per method and dataset"
    finished = [seed(runs_dir, rho=0.5 + i / 100) for i in range(12)]
    live = seed(runs_dir, running=True)
    index.sync(runs_dir)
    at = app("home")
    no_exception(at)
    offered = at.selectbox(key="home_open").options
    # the running run, the ten that ended last, the best: not every run of the workspace
    assert len(offered) == 12 and live.name in offered and best.name in offered
    assert len(set(offered) & {p.name for p in finished}) == 10
