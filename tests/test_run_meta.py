"""Run hygiene stored in the run directory (aqa.runs.meta): name, tags, note, archived; the index
keeps them across a rebuild; delete with and without --yes; a running run is not deleted."""

from __future__ import annotations

import json
import threading

import pytest

from aqa.cli import main
from aqa.errors import RunError
from aqa.runs import index, meta, store
from hygiene_fixture import seed


def test_meta_round_trip_and_defaults(tmp_path):
    path = seed(tmp_path)
    assert meta.read_meta(path) == {"name": None, "tags": [], "note": "", "archived": False}
    meta.update_meta(path, add_tag="fav")
    meta.update_meta(path, add_tag="fav")  # twice: once
    meta.update_meta(path, add_tag="lr-sweep", name="  best   so far ", note="lr 1e-4\n")
    meta.update_meta(path, archived=True)
    assert meta.read_meta(path) == {"name": "best so far", "tags": ["fav", "lr-sweep"],
                                    "note": "lr 1e-4", "archived": True}
    assert json.loads((path / meta.META_JSON).read_text())["updated"] > 0
    meta.update_meta(path, remove_tag="fav", name="", archived=False)
    assert meta.read_meta(path) == {"name": None, "tags": ["lr-sweep"], "note": "lr 1e-4",
                                    "archived": False}
    assert store.read_run(path)["config"]["optim"]["lr"] == 1e-4  # run.json untouched
    with pytest.raises(RunError, match="has no tag 'nope'"):
        meta.update_meta(path, remove_tag="nope")
    for bad in ("", "two words", "a,b", "x" * 65):
        with pytest.raises(RunError, match="is not a tag"):
            meta.update_meta(path, add_tag=bad)
    (path / meta.META_JSON).write_text("{torn")
    with pytest.raises(RunError, match="damaged.*fix it or delete it"):
        meta.read_meta(path)


def test_concurrent_updates_all_land(tmp_path):
    path = seed(tmp_path)
    threads = [threading.Thread(target=meta.update_meta, args=(path,), kwargs={"add_tag": f"t{i}"})
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(meta.read_meta(path)["tags"]) == [f"t{i}" for i in range(8)]


def test_index_copies_meta_and_rebuild_keeps_it(tmp_path):
    a, b = seed(tmp_path, rho=0.9), seed(tmp_path, rho=0.5)
    index.sync(tmp_path)
    index.update_meta(tmp_path, a, add_tag="fav", name="A", note="n")
    row = index.get_run(tmp_path, a.name)
    assert (row["tags"], row["name"], row["note"], row["archived"]) == (["fav"], "A", "n", False)
    meta.update_meta(b, archived=True)  # changed behind the index's back: the next sync sees it
    meta.update_meta(b, add_tag="x")    # at once again (same mtime tick): still seen
    assert [r["id"] for r in index.list_runs(tmp_path, archived=False)] == [a.name]
    assert index.get_run(tmp_path, b.name)["tags"] == ["x"]
    index.rebuild(tmp_path)
    rows = {r["id"]: r for r in index.list_runs(tmp_path, sync_first=False)}
    assert rows[a.name]["tags"] == ["fav"] and rows[a.name]["name"] == "A"
    assert rows[b.name]["archived"] is True
    assert index.best_test_metrics(tmp_path, [a.name]) == {a.name: {"rho": 0.9, "l2": 7.0}}


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_tag_note_rename_archive_ls_json(tmp_path, capsys):
    a, b = seed(tmp_path, lr=1e-4, rho=0.95), seed(tmp_path, lr=1e-2, rho=0.5, method="tpt")
    d = ["--runs-dir", str(tmp_path)]
    assert run_cli(capsys, "runs", "tag", a.name, "fav", *d)[1].strip() == f"{a.name}: tags: fav"
    assert run_cli(capsys, "runs", "note", a.name[-12:], "good one", *d)[0] == 0  # a suffix works
    assert run_cli(capsys, "runs", "rename", a.name, "best lr", *d)[0] == 0
    rc, out, _ = run_cli(capsys, "runs", "ls", "--json", *d)
    listed = {r["id"]: r for r in json.loads(out)}
    assert listed[a.name]["tags"] == ["fav"] and listed[a.name]["name"] == "best lr"
    assert listed[a.name]["note"] == "good one" and listed[b.name]["archived"] is False
    rc, out, err = run_cli(capsys, "runs", "ls", *d)
    assert '"best lr"  #fav' in out and out.startswith("RUN ")  # the table alone on stdout
    assert "BEST RHO: the highest test rho of any epoch (official protocol)" in err  # labelled
    out = run_cli(capsys, "runs", "show", a.name, *d)[1]
    assert "name      best lr" in out and "tags      fav" in out and "note      good one" in out
    assert "best      rho = 0.95 (epoch 2; official protocol: best on test)" in out
    assert run_cli(capsys, "runs", "archive", b.name, *d)[1].strip().endswith("archived")
    assert b.name not in run_cli(capsys, "runs", "ls", *d)[1]
    assert f"{b.name}" in run_cli(capsys, "runs", "ls", "--all", *d)[1]
    run_cli(capsys, "runs", "archive", b.name, "--undo", *d)
    assert b.name in run_cli(capsys, "runs", "ls", *d)[1]
    rc, out, _ = run_cli(capsys, "runs", "ls", "--where", "optim.lr<1e-3 and rho>0.9",
                         "--columns", "optim.*,rho", "--json", *d)
    (only,) = json.loads(out)
    assert only["id"] == a.name and only["columns"] == {"optim.lr": 1e-4, "optim.name": "adam",
                                                        "rho": 0.95}
    rc, out, _ = run_cli(capsys, "runs", "ls", "--where", "tags contains fav", "--columns",
                         "train.batch_size", *d)
    assert a.name in out and b.name not in out and "train.batch_size" in out
    rc, _, err = run_cli(capsys, "runs", "ls", "--where", "rho >", *d)
    assert rc == 2 and "bad filter" in err and "expected a value" in err
    rc, _, err = run_cli(capsys, "runs", "tag", a.name, "two words", *d)
    assert rc == 2 and "is not a tag" in err


def test_cli_diff(tmp_path, capsys):
    a, b = seed(tmp_path, lr=1e-4), seed(tmp_path, lr=1e-2, backbone="tiny3d")
    d = ["--runs-dir", str(tmp_path)]
    rc, out, _ = run_cli(capsys, "runs", "diff", a.name, b.name, "--json", *d)
    diff = json.loads(out)["differences"]
    assert [(x["key"], x["a"], x["b"]) for x in diff] == [("model.backbone", "i3d", "tiny3d"),
                                                          ("optim.lr", 1e-4, 1e-2)]
    rc, out, _ = run_cli(capsys, "runs", "diff", a.name, b.name, *d)
    assert "optim.lr" in out and "0.0001" in out and "tiny3d" in out
    assert "same config" in run_cli(capsys, "runs", "diff", a.name, a.name, *d)[1]


def test_delete_needs_yes_then_removes_files_and_row(tmp_path, capsys):
    a, b = seed(tmp_path), seed(tmp_path)
    (a / "checkpoints" / "best.pt").write_bytes(b"x" * 10)
    meta.update_meta(a, add_tag="gone")
    d = ["--runs-dir", str(tmp_path)]
    index.sync(tmp_path)
    rc, _, err = run_cli(capsys, "runs", "delete", a.name, *d)
    assert rc == 2 and "--yes" in err and a.is_dir()
    rc, out, _ = run_cli(capsys, "runs", "delete", a.name, "--yes", *d)
    assert rc == 0 and "deleted" in out and not a.exists()
    assert index.get_run(tmp_path, a.name) is None  # the row went with it, before any sync
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("index.db")] == [b.name]
    rc, _, err = run_cli(capsys, "runs", "delete", a.name, "--yes", *d)
    assert rc == 2 and "no run" in err


def test_a_running_run_is_not_deleted(tmp_path, capsys):
    path = seed(tmp_path, running=True)
    rc, _, err = run_cli(capsys, "runs", "delete", path.name, "--yes", "--runs-dir", str(tmp_path))
    assert rc == 2 and "is running: stop it first" in err and "runs stop" in err
    assert (path / store.RUN_JSON).is_file()
    with pytest.raises(RunError, match="stop it first"):
        index.delete_run(tmp_path, path)


def test_best_test_metrics_by_id_and_for_every_run(tmp_path):
    a, b = seed(tmp_path, rho=0.9), seed(tmp_path, rho=0.6)
    index.sync(tmp_path)
    want = {a.name: {"rho": 0.9, "l2": 7.0}, b.name: {"rho": 0.6, "l2": 7.0}}
    assert index.best_test_metrics(tmp_path, [a.name, b.name]) == want  # ids listed in the query
    assert index.best_test_metrics(tmp_path, [b.name]) == {b.name: want[b.name]}
    assert index.best_test_metrics(tmp_path, ["no-such-run"]) == {"no-such-run": {}}
    many = [b.name] + [f"absent-{i}" for i in range(600)]  # over 500: every run's, then picked
    got = index.best_test_metrics(tmp_path, many)
    assert got[b.name] == want[b.name] and a.name not in got and got["absent-0"] == {}
