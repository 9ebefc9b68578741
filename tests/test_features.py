"""Feature datasets (rg, fisv features mode, folder_features): the item contract, the training
window, padding, label files in the official layouts, recipes, and clear errors."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aqa.config import build_run_config
from aqa.data.base import collate
from aqa.data.features import (check_recipe, crop_or_pad, recipe_of, uses_features,
                               window_start)
from aqa.errors import DatasetError
from aqa.registry import DATASETS
from tests.features_fixture import (RG_FEATURES, make_feature_folder, make_fisv_features,
                                    make_rg)


def built(name, root, workspace, split="train", train=True, seed=0, **kw):
    entry = DATASETS.get(name)
    cfg = entry.resolve(replace(entry.config_cls(), root=str(root), **kw), workspace)
    return entry.build(cfg, split, train, seed)


# ----------------------------------------------------------------- rg

def test_rg_reads_gdlt_layout_items_and_apparatus(tmp_path):
    info = make_rg(tmp_path / "rg", apparatus=("Ball", "Hoop"), n_train=4, n_test=2, dim=16,
                   t_range=(3, 9))
    ds = built("rg", tmp_path / "rg", tmp_path, clip_num=5)
    assert [s.id for s in ds.samples] == [n for n, *_ in info["train"] if n.startswith("Ball")]
    name, d, e, total = info["train"][0]
    item = ds[0]
    assert item["id"] == name and item["score"].dtype == torch.float32
    assert item["score"].item() == pytest.approx(total)  # data.target defaults to total
    assert {k: round(item[k].item(), 3) for k in ("difficulty", "execution", "total")} == \
        {"difficulty": d, "execution": e, "total": total}
    assert item["features"].shape == (5, 16) and item["features"].dtype == torch.float32
    assert item["length"].dtype == torch.int64 and item["length"].item() == min(5, info["lengths"][name])
    assert ds.samples[0].meta["features"] == str(tmp_path / "rg" / RG_FEATURES / f"{name}.npy")
    hoop = built("rg", tmp_path / "rg", tmp_path, apparatus="Hoop", target="execution")
    assert [s.id for s in hoop.samples] == [f"Hoop_{k:03d}" for k in range(1, 5)]
    assert hoop.samples[0].score == info["train"][4][2]
    both = built("rg", tmp_path / "rg", tmp_path, apparatus="all")
    assert len(both) == 8


def test_rg_test_items_are_whole_programs_and_collate_pads(tmp_path):
    info = make_rg(tmp_path / "rg", n_train=2, n_test=3, dim=8, t_range=(3, 12), seed=3)
    ds = built("rg", tmp_path / "rg", tmp_path, split="test", train=False, clip_num=4)
    items = [ds[i] for i in range(len(ds))]
    for it in items:
        full = np.load(tmp_path / "rg" / RG_FEATURES / f"{it['id']}.npy")
        assert torch.equal(it["features"], torch.from_numpy(full))
        assert it["length"].item() == len(full)
    batch = collate(items)
    longest = max(info["lengths"][n] for n, *_ in info["test"])
    assert batch["features"].shape == (3, longest, 8)
    for b, it in enumerate(items):
        n = it["length"].item()
        assert torch.equal(batch["features"][b, :n], it["features"])
        assert not batch["features"][b, n:].any()
    assert batch["length"].tolist() == [it["length"].item() for it in items]


def test_training_window_is_consecutive_rows_and_deterministic(tmp_path):
    make_rg(tmp_path / "rg", n_train=3, n_test=1, dim=4, t_range=(20, 20))
    a = built("rg", tmp_path / "rg", tmp_path, clip_num=6, seed=1)
    b = built("rg", tmp_path / "rg", tmp_path, clip_num=6, seed=1)
    full = np.load(a.samples[0].meta["features"])
    starts = set()
    for _ in range(40):
        x, y = a[0]["features"].numpy(), b[0]["features"].numpy()
        assert np.array_equal(x, y)  # same seed, same draws
        start = int(np.flatnonzero((full == x[0]).all(1))[0])
        assert np.array_equal(x, full[start:start + 6])
        starts.add(start)
    assert len(starts) > 5 and max(starts) <= 14


def test_window_start_support_default_and_official():
    rng = np.random.default_rng(0)
    ours = {window_start(rng, 10, 4) for _ in range(500)}
    official = {window_start(rng, 10, 4, official=True) for _ in range(500)}
    assert ours == set(range(7))  # the last window (rows 6..9) can be drawn
    assert official == set(range(6))  # the official loader never draws it
    assert window_start(rng, 4, 4) == 0 and window_start(rng, 3, 4, official=True) == 0
    assert window_start(rng, 5, 4, official=True) == 0


def test_crop_or_pad_rule():
    feat = np.arange(12, dtype=np.float64).reshape(6, 2)
    win, n = crop_or_pad(feat, 3, 2)
    assert n == 3 and win.dtype == np.float32 and np.array_equal(win, feat[2:5])
    pad, n = crop_or_pad(feat, 8, 0)
    assert n == 6 and pad.shape == (8, 2) and np.array_equal(pad[:6], feat) and not pad[6:].any()
    same, n = crop_or_pad(feat, 6, 0)
    assert n == 6 and np.array_equal(same, feat)


def test_short_program_is_zero_padded_at_train(tmp_path):
    make_rg(tmp_path / "rg", n_train=2, n_test=1, dim=4, t_range=(3, 3))
    it = built("rg", tmp_path / "rg", tmp_path, clip_num=7)[0]
    full = np.load(tmp_path / "rg" / RG_FEATURES / f"{it['id']}.npy")
    assert it["features"].shape == (7, 4) and it["length"].item() == 3
    assert np.array_equal(it["features"][:3].numpy(), full) and not it["features"][3:].any()


def test_rg_config_through_run_config_and_uses_features(tmp_path):
    cfg = build_run_config("regression", "rg", overrides=["data.apparatus=Ribbon", "data.clip_num=26",
                                                          "data.official_window=true"])
    assert cfg.data.apparatus == "Ribbon" and cfg.data.clip_num == 26 and cfg.data.official_window
    assert cfg.data.features == RG_FEATURES and cfg.data.target == "total"
    assert uses_features(cfg.data)
    assert not uses_features(build_run_config("regression", "fisv").data)
    assert uses_features(build_run_config("regression", "fisv", overrides=["data.features=f"]).data)


# ----------------------------------------------------------------- fisv, folder_features

def test_fisv_features_mode_official_layout(tmp_path):
    info = make_fisv_features(tmp_path / "fisv", n_train=4, n_test=2, dim=8)
    ds = built("fisv", tmp_path / "fisv", tmp_path, features=RG_FEATURES, clip_num=5)
    assert [s.id for s in ds.samples] == [n for n, *_ in info["train"]]
    name, tes, pcs = info["train"][1]
    it = ds[1]
    assert it["score"].item() == pytest.approx(tes) and it["tes"].item() == pytest.approx(tes)
    assert it["pcs"].item() == pytest.approx(pcs) and it["features"].shape == (5, 8)
    pcs_ds = built("fisv", tmp_path / "fisv", tmp_path, split="test", train=False,
                   features=RG_FEATURES, target="pcs")
    assert [s.score for s in pcs_ds.samples] == [p for *_, p in info["test"]]


def test_fisv_features_mode_reads_the_video_mode_lists(tmp_path):
    root = tmp_path / "fisv"
    (root / "feat").mkdir(parents=True)
    (root / "train.txt").write_text("1 30.5 25.0 1\n2 40.0 30.0 0\n")  # no header: both are data
    (root / "test.txt").write_text("3 20.0 22.0 0\n")
    for n in (1, 2, 3):
        np.save(root / "feat" / f"{n}.npy", np.ones((4, 6), np.float32) * n)
    ds = built("fisv", root, tmp_path, features="feat")
    assert [(s.id, s.score) for s in ds.samples] == [("1", 30.5), ("2", 40.0)]
    with pytest.raises(DatasetError, match="total needs the score CSV"):
        built("fisv", root, tmp_path, features="feat", target="total")


def test_folder_features(tmp_path):
    rows = make_feature_folder(tmp_path / "ff", n=8, dim=12, t_range=(5, 9))
    ds = built("folder_features", tmp_path / "ff", tmp_path, clip_num=6)
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [s.id for s in ds.samples] == [Path(r["video"]).stem for r in train_rows]
    it = ds[0]
    assert it["score"].item() == pytest.approx(float(train_rows[0]["score"]))
    assert it["difficulty"].item() == pytest.approx(float(train_rows[0]["difficulty"]))
    assert it["features"].shape == (6, 12) and ds.dim == 12


# ----------------------------------------------------------------- errors

def test_missing_feature_file_named_and_allow_missing(tmp_path):
    make_rg(tmp_path / "rg", n_train=4, n_test=1, dim=4)
    (tmp_path / "rg" / RG_FEATURES / "Ball_002.npy").unlink()
    with pytest.raises(DatasetError, match=r"Ball_002\.npy \(missing\).*features extract"):
        built("rg", tmp_path / "rg", tmp_path)
    ds = built("rg", tmp_path / "rg", tmp_path, allow_missing=True)
    assert ds.excluded == ["Ball_002"] and len(ds) == 3


@pytest.mark.parametrize("bad, why", [
    (np.ones((5, 7), np.float32), r"D = 7, the other programs have D = 4"),
    (np.ones((0, 4), np.float32), r"no rows"),
    (np.ones(9, np.float32), r"expected \(T, D\)"),
])
def test_misshaped_feature_files_refused(tmp_path, bad, why):
    make_rg(tmp_path / "rg", n_train=4, n_test=1, dim=4)
    np.save(tmp_path / "rg" / RG_FEATURES / "Ball_003.npy", bad)
    with pytest.raises(DatasetError, match=why):
        built("rg", tmp_path / "rg", tmp_path)


def test_unreadable_and_empty_feature_files_refused(tmp_path):
    make_rg(tmp_path / "rg", n_train=3, n_test=1, dim=4)
    (tmp_path / "rg" / RG_FEATURES / "Ball_001.npy").write_bytes(b"")
    (tmp_path / "rg" / RG_FEATURES / "Ball_002.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DatasetError, match=r"2 of 3 .*empty file.*not a readable"):
        built("rg", tmp_path / "rg", tmp_path)


def test_label_file_and_option_errors(tmp_path):
    make_rg(tmp_path / "rg", n_train=2, n_test=1, dim=4)
    with pytest.raises(DatasetError, match="apparatus"):
        built("rg", tmp_path / "rg", tmp_path, apparatus="Rope")
    with pytest.raises(DatasetError, match="target"):
        built("rg", tmp_path / "rg", tmp_path, target="artistry")
    with pytest.raises(DatasetError, match="no rg label file"):
        built("rg", tmp_path / "rg", tmp_path, train_labels="nope.txt")
    with pytest.raises(DatasetError, match="no feature folder"):
        built("rg", tmp_path / "rg", tmp_path, features="elsewhere")
    (tmp_path / "rg" / "train.txt").write_text("header\nBall_001 1.0 2.0\n")
    with pytest.raises(DatasetError, match="line 2: expected 'name difficulty execution total'"):
        built("rg", tmp_path / "rg", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-root"):
        built("rg", "", tmp_path)


# ----------------------------------------------------------------- recipes

def test_recipe_check(tmp_path):
    make_rg(tmp_path / "rg", n_train=2, n_test=1, dim=4)
    folder = tmp_path / "rg" / RG_FEATURES
    assert recipe_of(folder) is None and check_recipe(None, folder) is None
    recipe = {"backbone": "i3d", "weights": "sha256:ab", "clip_len": 32, "stride": 16, "fps": 25.0,
              "frame_size": 224, "normalisation": "i3d", "pooling": "avg", "dim": 4,
              "code_version": "x"}
    with pytest.raises(DatasetError, match="has no recipe.json"):
        check_recipe(recipe, folder)
    (folder / "recipe.json").write_text(json.dumps(recipe))
    assert check_recipe({**recipe, "code_version": "y"}, folder)["stride"] == 16
    with pytest.raises(DatasetError, match=r"stride: expected 32, found 16.*features extract"):
        check_recipe({**recipe, "stride": 32}, folder)
    with pytest.raises(DatasetError, match="expected none"):
        check_recipe(None, folder)
    assert built("rg", tmp_path / "rg", tmp_path).recipe == recipe
    (folder / "recipe.json").write_text("{broken")
    with pytest.raises(DatasetError, match="not a readable recipe"):
        recipe_of(folder)
