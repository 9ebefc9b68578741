"""The runs filter language, records, columns and config diffs (aqa.runs.query): no app, no
index, no eval."""

from __future__ import annotations

import ast
import inspect
import json
import re

import pytest

from aqa.runs import query
from aqa.runs.query import BoolOp, Compare, Not, QueryError, matches, parse

REC = {"optim.lr": 1e-4, "train.batch_size": 4, "train.amp": False, "method": "core",
       "tags": ["fav", "baseline"], "note": "low LR sweep", "rho": 0.93, "l2": 7.0,
       "name": None, "model.backbone": "i3d"}


def ok(text: str, rec: dict = REC) -> bool:
    return matches(parse(text), rec)


def test_precedence_not_and_or():
    # and binds tighter than or; not tighter than and
    assert parse("a==1 or b==2 and c==3") == BoolOp("or", (
        Compare("a", "==", 1.0, False),
        BoolOp("and", (Compare("b", "==", 2.0, False), Compare("c", "==", 3.0, False)))))
    assert parse("not a==1 and b==2") == BoolOp("and", (Not(Compare("a", "==", 1.0, False)),
                                                        Compare("b", "==", 2.0, False)))
    assert parse("(a==1 or b==2) and c==3").op == "and"
    assert ok("method==tpt or method==core and rho>0.9")
    assert not ok("(method==tpt or method==core) and rho>0.95")
    assert ok("not method==tpt and NOT (rho < 0.5)")  # keywords are case-insensitive


def test_comparisons_numbers_text_booleans_lists():
    assert ok("optim.lr<1e-3 and rho>0.9")
    assert ok("optim.lr <= 0.0001") and not ok("optim.lr < 1e-4") and ok("optim.lr == 1e-4")
    assert ok("train.batch_size>=4") and ok("train.batch_size != 8") and ok("l2 > -1")
    assert ok("method==core") and ok("method=='core'") and ok('method != "tpt"')
    assert ok("train.amp==false") and not ok("train.amp==true") and ok("name==none")
    assert ok("tags contains fav") and not ok("tags contains fa")  # list: membership
    assert ok("note contains lr") and ok("note contains 'LR sweep'")  # text: substring, any case
    assert ok("model.backbone==i3d") and ok("method > 'abc'")  # text order


def test_missing_field_never_matches_and_not_keeps_it():
    assert not ok("accuracy>0.5") and not ok("accuracy!=0.5") and ok("not accuracy==0.5")
    assert not ok("method<3")  # a number against text: no match, no error
    assert not ok("rho>0.5", {"rho": float("nan")})


@pytest.mark.parametrize("text, where", [
    ("", "empty"), ("rho>", "end"), ("rho 0.9", "'0.9' at position 5"),
    ("(rho>0.9", "')'"), ("rho>0.9)", "')' at position 8"), ("rho=0.9", "use =="),
    ("and rho>1", "field name"), ("rho>0.9 or", "end"), ("rho>0.9 method==core", "'method'"),
    ("__import__('os').system('touch x')", "position"), ("1 > 0", "field name"),
])
def test_bad_expressions_say_where(text, where):
    with pytest.raises(QueryError, match=re.escape(where)) as exc:
        parse(text)
    assert "position" in str(exc.value) or "end" in str(exc.value) or "empty" in str(exc.value)


def test_the_module_never_evaluates_user_text():
    tree = ast.parse(inspect.getsource(query))
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
              and isinstance(n.func, ast.Name)}
    assert not called & {"eval", "exec", "compile", "__import__"}
    # Python syntax that is not the language is refused, not run
    for text in ("rho>0.9 if 1 else 0", "rho>[1]", "rho>0.9; import os", "rho>0.9 + 1"):
        with pytest.raises(QueryError):
            matches(parse(text), REC)
    assert not ok("rho.__class__!=0")  # a dotted name is only ever a key of the record


def test_records_columns_and_view():
    row = {"id": "r1", "method": "core", "config": '{"optim": {"lr": 0.001}, "model": '
           '{"backbone": "i3d", "heads": {"n": 2}}}', "tags": ["fav"], "best_rho": 0.9}
    rec = query.record(row, {"rho": 0.9, "l2": 5.0})
    assert rec["optim.lr"] == 0.001 and rec["model.heads.n"] == 2 and rec["tags"] == ["fav"]
    assert rec["rho"] == 0.9 and rec["id"] == "r1"
    assert query.expand_columns(["optim.lr", "model.*", "optim.lr", "nope"], rec) == [
        "optim.lr", "model.backbone", "model.heads.n", "nope"]
    assert query.split_columns(" optim.lr, ,model.* ") == ["optim.lr", "model.*"]
    rows = [dict(row, id="a"), dict(row, id="b", config='{"optim": {"lr": 0.1}}')]
    v = query.view(rows, {"a": {"rho": 0.9}, "b": {"rho": 0.5}}, "optim.lr<1e-2", ["optim.*"])
    assert [r["id"] for r in v.rows] == ["a"] and v.columns == ["optim.lr"]
    with pytest.raises(QueryError):
        query.view(rows, {}, "rho >")


def test_config_diff():
    a = {"optim": {"lr": 1e-3, "name": "adam"}, "train": {"epochs": 10, "amp": True}, "seed": 0}
    b = {"optim": {"lr": 1e-4, "name": "adam"}, "train": {"epochs": 10, "amp": 1}, "extra": [1]}
    diff = query.config_diff(a, b)
    assert [k for k, _, _ in diff] == ["extra", "optim.lr", "seed", "train.amp"]
    assert diff[0][1] is query.MISSING and diff[0][2] == [1] and diff[1][1:] == (1e-3, 1e-4)
    assert query.as_text(query.MISSING) == "(absent)" and query.config_diff(a, a) == []


def test_records_of_one_config_text_are_separate_dicts():
    row = {"id": "a", "config": json.dumps({"optim": {"lr": 1e-3}, "method": "core"})}
    first = query.record(row, {"rho": 0.9})
    first["optim.lr"] = 5.0  # a caller's change must not reach the next record of that config
    again = query.record(dict(row, id="b"))
    assert again["optim.lr"] == 1e-3 and "rho" not in again and again["id"] == "b"
    assert query.record({"id": "c", "config": "not json"}) == {"id": "c"}
