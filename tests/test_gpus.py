"""GPU allocation on inventories the test supplies (no nvidia-smi), and `aqa gpus`."""

import json

import pytest

from aqa.errors import JobError
from aqa.jobs.gpus import allocate, check_request, mark_foreign, parse_gpus

TWO = [{"index": 0, "name": "A", "uuid": "u0", "total_mb": 80000, "free_mb": 70000, "util": 0},
       {"index": 1, "name": "A", "uuid": "u1", "total_mb": 80000, "free_mb": 79000, "util": 0}]
FOUR = TWO + [{"index": 2, "name": "A", "uuid": "u2", "total_mb": 80000, "free_mb": 79000},
              {"index": 3, "name": "A", "uuid": "u3", "total_mb": 80000, "free_mb": 10}]


@pytest.mark.parametrize("text, want", [(None, (None, 0)), ("", (None, 0)), ("0", (None, 0)),
                                        ("2", (None, 2)), ("0,2", ([0, 2], 2)), ("3,", ([3], 1))])
def test_parse_gpus(text, want):
    assert parse_gpus(text) == want


@pytest.mark.parametrize("text", ["x", "1,1", "-1", "-1,2"])
def test_parse_gpus_rejects(text):
    with pytest.raises(JobError, match="--gpus"):
        parse_gpus(text)


@pytest.mark.parametrize("held, req, want", [
    (set(), (None, 1), [1]),            # most free memory first
    (set(), (None, 2), [0, 1]),
    ({1}, (None, 1), [0]),
    ({0, 1}, (None, 1), None),          # wait
    (set(), ([0], 1), [0]),
    ({0}, ([0], 1), None),
    (set(), (None, 0), []),
])
def test_allocate_two_gpus(held, req, want):
    assert allocate(TWO, held, req) == want


def test_allocate_any_n_prefers_free_memory_then_index():
    assert allocate(FOUR, set(), (None, 2)) == [1, 2]
    assert allocate(FOUR, {1}, (None, 2)) == [0, 2]
    assert allocate(FOUR, {0, 1, 2}, (None, 2)) is None


def test_foreign_process_over_threshold_makes_a_gpu_busy():
    apps = [{"gpu_uuid": "u1", "pid": 999, "used_mb": 5000},
            {"gpu_uuid": "u0", "pid": 42, "used_mb": 30000}]  # 42 is one of ours
    inv = mark_foreign(TWO, apps, our_pids={42})
    assert [(g["foreign_mb"], g["foreign_pids"]) for g in inv] == [(0, []), (5000, [999])]
    assert allocate(inv, set(), (None, 1), busy_threshold_mb=1024) == [0]
    assert allocate(inv, {0}, (None, 1), busy_threshold_mb=1024) is None
    assert allocate(inv, {0}, (None, 1), busy_threshold_mb=8000) == [1]
    assert allocate(inv, set(), ([1], 1), busy_threshold_mb=1024) is None


def test_impossible_requests_fail_at_submit():
    with pytest.raises(JobError, match="has 2"):
        check_request((None, 3), TWO)
    with pytest.raises(JobError, match=r"\[5\] not found"):
        check_request(([0, 5], 2), TWO)
    with pytest.raises(JobError, match="has 0"):
        check_request((None, 1), [])
    check_request(([0, 1], 2), TWO)


def test_gpus_command_json_without_gpus(tmp_path):
    from aqa.cli import main
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["gpus", "--json", "--runs-dir", str(tmp_path)]) == 0
    info = json.loads(out.getvalue())
    assert set(info) == {"gpus", "busy_threshold_mb"} and info["busy_threshold_mb"] == 1024
