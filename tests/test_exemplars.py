import pickle

import numpy as np
import pytest

from aqa.data.base import Sample
from aqa.data.exemplars import choose_exemplars, pool_by
from conftest import SHARED_DATA


def S(i, dd, **meta):
    return Sample(id=f"s{i}", video="x.mp4", score=float(i), difficulty=dd, meta=meta)


POOL = [S(0, 2.0), S(1, 2.0), S(2, 2.0), S(3, 3.0), S(4, 3.4), S(5, 1.5)]


def test_pool_by_keys():
    assert {k: [s.id for s in g] for k, g in pool_by(POOL, "difficulty").groups.items()} == {
        2.0: ["s0", "s1", "s2"], 3.0: ["s3"], 3.4: ["s4"], 1.5: ["s5"]}
    assert list(pool_by(POOL, "none").groups) == [None]
    samples = [S(0, 1, dive_number="407C"), S(1, 1, dive_number="107B"), S(2, 1, dive_number="407C")]
    assert [s.id for s in pool_by(samples, "dive_number").groups["407C"]] == ["s0", "s2"]
    with pytest.raises(ValueError, match="no 'class'"):
        pool_by(POOL, "class")
    with pytest.raises(ValueError, match="unknown exemplar key"):
        pool_by(POOL, "colour")


def test_same_dd_excluding_the_query_seeded():
    pool = pool_by(POOL, "difficulty")
    ex = choose_exemplars(POOL[0], pool, 1, np.random.default_rng(0))
    assert ex.samples[0].id in {"s1", "s2"} and ex.weights.tolist() == [1.0]
    again = choose_exemplars(POOL[0], pool, 1, np.random.default_rng(0))
    assert again.samples[0].id == ex.samples[0].id
    test = choose_exemplars(POOL[0], pool, 10, np.random.default_rng(1))  # 10 voters, 2 exist
    assert sorted(s.id for s in test.samples) == ["s1", "s2"]
    assert np.allclose(test.weights, [0.5, 0.5])


def test_only_member_is_its_own_exemplar():
    ex = choose_exemplars(POOL[3], pool_by(POOL, "difficulty"), 1, np.random.default_rng(0))
    assert [s.id for s in ex.samples] == ["s3"]


def test_unseen_dd_falls_back_to_the_nearest_group():
    query = S(9, 3.1)  # nearest: 3.0
    ex = choose_exemplars(query, pool_by(POOL, "difficulty"), 3, np.random.default_rng(0))
    assert [s.id for s in ex.samples] == ["s3"]


def test_tpt_padding_from_nearest_dds_with_zero_weights():
    ex = choose_exemplars(POOL[3], pool_by(POOL, "difficulty"), 4, np.random.default_rng(0),
                          pad=True)
    ids = [s.id for s in ex.samples]
    assert ids[0] == "s3" and ids[1] == "s4"  # 3.0 itself, then 3.4 (distance 0.4)
    assert set(ids[2:]) <= {"s0", "s1", "s2"}  # then 2.0 (distance 1.0)
    assert ex.weights.tolist() == [1.0, 0.0, 0.0, 0.0]
    tiny = choose_exemplars(POOL[5], pool_by(POOL[5:], "difficulty"), 3, np.random.default_rng(0),
                            pad=True)
    assert len(tiny.samples) == 3 and tiny.weights.tolist() == [1.0, 0.0, 0.0]


def test_mtl_aqa_same_dd_pairs():
    info = SHARED_DATA / "MTL-AQA"
    if not info.exists():
        pytest.skip(f"{info} is absent (../shared/data)")
    from aqa.safe_pickle import safe_load
    ann = safe_load(info / "final_annotations_dict_with_dive_number.pkl")
    train = pickle.load(open(info / "train_split_0.pkl", "rb"))
    samples = [Sample(id=f"{e:02d}_{i:02d}", video="x", score=ann[(e, i)]["final_score"],
                      difficulty=ann[(e, i)]["difficulty"]) for e, i in train]
    pool = pool_by(samples, "difficulty")
    assert pool.pair_count() == 67562 and len(pool.groups[1.5]) == 1
