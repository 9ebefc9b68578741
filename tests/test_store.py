import json

import pytest

from aqa.errors import RunError
from aqa.jobs.local import submit
from aqa.runs import store


def test_run_ids_sort_by_time():
    a = store.new_run_id("core", "mtl_aqa", now=1_700_000_000.001)
    b = store.new_run_id("core", "mtl_aqa", now=1_700_000_000.002)
    assert a < b and a.endswith("-001-core-mtl_aqa")


def test_create_run_writes_the_spec(tmp_path):
    path = store.create_run(tmp_path, {"method": "regression", "dataset": "synthetic"}, ["x"])
    spec = json.loads((path / "run.json").read_text())
    assert spec["id"] == path.name and spec["argv"] == ["x"]
    assert (path / "checkpoints").is_dir() and (path / "predictions").is_dir()
    # two runs in the same millisecond get distinct ids
    other = store.create_run(tmp_path, {"method": "regression", "dataset": "synthetic"})
    assert other != path


@pytest.mark.parametrize("ref", ["../etc", "/etc/passwd", "a/../../b", ""])
def test_run_ids_cannot_escape_the_workspace(tmp_path, ref):
    with pytest.raises(RunError):
        store.find_run(tmp_path, ref)


def test_find_run_by_unique_suffix(tmp_path):
    path = store.create_run(tmp_path, {"method": "regression", "dataset": "synthetic"})
    assert store.find_run(tmp_path, path.name[:15]) == path


def test_atomic_json_leaves_no_temp_file(tmp_path):
    store.write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_same_submission_id_gives_one_run(runs_dir, synthetic_root):
    args = dict(overrides=[f"data.root={synthetic_root}"], start_now=False, submission_id="form-1")
    first = submit(runs_dir, "regression", "synthetic", **args)
    second = submit(runs_dir, "regression", "synthetic", **args)
    assert first == second
    assert len(store.list_run_dirs(runs_dir)) == 1


def test_config_errors_write_nothing(runs_dir):
    from aqa.errors import ConfigError
    with pytest.raises(ConfigError):
        submit(runs_dir, "regression", "synthetic", overrides=["train.nope=1"],
               submission_id="bad")
    assert store.list_run_dirs(runs_dir) == []
    # the failed id is not burnt: it can be submitted once fixed
    assert submit(runs_dir, "regression", "synthetic", start_now=False, submission_id="bad")
