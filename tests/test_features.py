"""Feature datasets (rg, fisv features mode, folder_features): the item contract, the training
window, padding, label files in the official layouts, recipes, and clear errors; feature
extraction (tiny videos, seeded I3D weights): the rows, resume, recipe refusal, the run, the CLI,
the doctor."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from aqa.cli import main as cli_main
from aqa.config import build_run_config
from aqa.data.base import collate
from aqa.data.features import (check_recipe, crop_or_pad, recipe_of, uses_features,
                               window_start)
from aqa.errors import CheckpointError, ConfigError, DatasetError
from aqa.features import Recipe, clip_starts, extract_all, extract_video, frame_plan
from aqa.features.extract import load_backbone
from aqa.registry import DATASETS
from tests.features_fixture import (RG_FEATURES, make_feature_folder, make_fisv_features,
                                    make_program_videos, make_rg)


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
              "frame_size": 224, "frames": "square", "normalisation": "i3d", "pooling": "avg", "align": "start", "dim": 4,
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


# ----------------------------------------------------------------- extraction

TINY = dict(clip_len=8, stride=4, frame_size=32)


@pytest.fixture(scope="module")
def i3d_weights(tmp_path_factory):
    """A seeded I3D state dict with non-trivial BN statistics (features far from zero)."""
    from aqa.models.i3d import I3D
    from tests.parity_inputs import condition

    path = tmp_path_factory.mktemp("i3d") / "i3d_seeded.pt"
    torch.save(condition(I3D("hassony2", 400), seed=3).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("programs")
    return make_program_videos(folder, ["p0", "p1", "p2"], num_frames=20)


def test_frame_plan_and_clip_starts():
    assert frame_plan(5, 25.0, 0).tolist() == [0, 1, 2, 3, 4]
    assert frame_plan(10, 25.0, 12.5).tolist() == [0, 2, 4, 6, 8]
    assert frame_plan(4, 30.0, 60.0).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert clip_starts(20, 8, 4) == [0, 4, 8, 12]
    assert clip_starts(21, 8, 4) == [0, 4, 8, 12]  # frames after the last full window unused
    assert clip_starts(5, 8, 4) == [0] and clip_starts(8, 8, 4) == [0]
    # GDLT's extractor (rg_swintx.py): N // 32 windows of 32 after dropping (N % 32) // 2 frames
    # first: N = 100 -> frames 2..97, windows at 2, 34, 66
    assert clip_starts(100, 32, 32, "center") == [2, 34, 66]
    assert clip_starts(99, 32, 32, "center") == [1, 33, 65] and clip_starts(96, 32, 32, "center") == [0, 32, 64]
    assert clip_starts(21, 8, 4, "center") == [0, 4, 8, 12]  # one frame left: shift 0
    assert clip_starts(23, 8, 4, "center") == [1, 5, 9, 13]


def test_extract_video_rows_are_the_backbone_on_each_window(programs, i3d_weights):
    from aqa import video

    recipe = Recipe(weights=str(i3d_weights), **TINY)
    seen = []
    feat = extract_video(programs[1], recipe, "cpu", progress=lambda d, t: seen.append((d, t)),
                         batch_clips=3)
    n = video.probe(programs[1]).num_frames  # 23 frames: windows at 0, 4, 8, 12
    assert n == 23 and feat.shape == (4, 1024) and feat.dtype == np.float32
    assert seen == [(3, 4), (4, 4)]
    encoder, ident = load_backbone(recipe)
    frames = video.read_frames(programs[1], list(range(8, 16)), (32, 32))
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2)[None]
    np.testing.assert_allclose(feat[2], encoder(clip)[0].numpy(), rtol=1e-4, atol=1e-5)  # batch of 1 vs 3
    assert feat.std() > 1e-3  # the seeded weights give features, not zeros
    again = extract_video(programs[1], recipe, "cpu", batch_clips=4)
    np.testing.assert_allclose(again, feat, rtol=1e-4, atol=1e-5)
    assert ident["weights"].startswith("i3d:sha256:") and ident["dim"] == 1024


def test_short_video_gives_one_row_and_fps_resamples(programs, i3d_weights):
    short = extract_video(programs[0], Recipe(weights=str(i3d_weights), clip_len=32, stride=16,
                                              frame_size=32), "cpu")
    assert short.shape == (1, 1024)  # 20 frames < one 32-frame window: the last frame repeated
    half = extract_video(programs[2], Recipe(weights=str(i3d_weights), fps=12.5, **TINY), "cpu")
    assert half.shape == (2, 1024)  # 26 frames at 25 fps -> 13 at 12.5 fps -> windows 0, 4


def test_swin3d_random_init_shape(tmp_path):
    video = make_program_videos(tmp_path, ["s"], 12)[0]
    feat = extract_video(video, Recipe(backbone="swin3d", weights="", clip_len=4, stride=4,
                                       frame_size=32), "cpu")
    assert feat.shape == (3, 768) and np.isfinite(feat).all()


def test_recipe_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="backbone"):
        Recipe(backbone="vit").resolved()
    with pytest.raises(ConfigError, match="at least 8"):
        Recipe(clip_len=4).resolved()
    with pytest.raises(ConfigError, match="stride"):
        Recipe(stride=0).resolved()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))  # nothing downloaded there
    with pytest.raises(CheckpointError, match="--download-weights"):
        load_backbone(Recipe(backbone="swin3d", **TINY))


def test_extract_all_resumes_and_writes_atomically(tmp_path, programs, i3d_weights):
    recipe = Recipe(weights=str(i3d_weights), **TINY)
    items = [(p.stem, p) for p in programs]
    out = tmp_path / "feats"
    calls = {"n": 0}

    def stop_after_first():  # an interruption once the first video is written
        calls["n"] += 1
        return (out / "p0.npy").exists()

    first = extract_all(items, out, recipe, stop=stop_after_first, log=lambda s: None)
    assert first["stopped"] and first["done"] == 1
    assert sorted(p.name for p in out.iterdir()) == ["p0.npy", "recipe.json"]  # no temp files
    kept = (out / "p0.npy").read_bytes()
    (out / "p1.npy").write_bytes(b"\x93NUMPY half a file")  # a torn write from a crash
    lines = []
    second = extract_all(items, out, recipe, log=lines.append)
    assert second["skipped"] == 1 and second["done"] == 2 and not second["failed"]
    assert (out / "p0.npy").read_bytes() == kept
    assert "1 of 3 videos already extracted" in lines[0]
    ds_items = {n: np.load(out / f"{n}.npy") for n, _ in items}
    assert [v.shape for v in ds_items.values()] == [(4, 1024), (4, 1024), (5, 1024)]
    assert json.loads((out / "recipe.json").read_text())["weights"].startswith("i3d:sha256:")


def test_extract_all_refuses_another_recipe_and_unknown_features(tmp_path, programs, i3d_weights):
    items = [(programs[0].stem, programs[0])]
    out = tmp_path / "feats"
    extract_all(items, out, Recipe(weights=str(i3d_weights), **TINY), log=lambda s: None)
    with pytest.raises(DatasetError, match=r"another recipe \(stride: 4 -> |stride"):
        extract_all(items, out, Recipe(weights=str(i3d_weights), clip_len=8, stride=8,
                                       frame_size=32), log=lambda s: None)
    with pytest.raises(DatasetError, match="weights"):
        extract_all(items, out, Recipe(weights="", **TINY), log=lambda s: None)
    other = tmp_path / "official"
    other.mkdir()
    np.save(other / "x.npy", np.ones((3, 4), np.float32))
    with pytest.raises(DatasetError, match="without a recipe.json"):
        extract_all(items, other, Recipe(weights="", **TINY), log=lambda s: None)


def test_extract_all_reports_unreadable_video_and_goes_on(tmp_path, programs):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    res = extract_all([("bad", bad), ("p0", programs[0])], tmp_path / "f",
                      Recipe(weights="", **TINY), log=lambda s: None)
    assert res["done"] == 1 and len(res["failed"]) == 1 and res["failed"][0].startswith("bad:")


class Flag:
    def __init__(self, after=None):
        self.after, self.signal = after, None

    @property
    def requested(self):
        if self.after is not None and self.after():
            self.signal = "SIGTERM"
            return True
        return False


def test_extraction_run_lifecycle_stop_and_resume(tmp_path, runs_dir, i3d_weights):
    """The run through the workspace: created and checked by submit (not started here), run by
    aqa.features.run.main as `python -m aqa.train` would, stopped, resumed, then trained on."""
    from aqa.features.run import main as run_main
    from aqa.features.submit import submit_extraction
    from aqa.runs.events import read_events
    from aqa.runs.status import run_status

    rows = make_feature_folder(tmp_path / "ff", n=4, dim=4)  # the CSV; features come from videos
    import shutil
    shutil.rmtree(tmp_path / "ff" / "features")
    make_program_videos(tmp_path / "ff" / "clips", [Path(r["video"]).stem for r in rows], 16)
    out = tmp_path / "ff" / "features"
    path = submit_extraction(runs_dir, "folder", str(tmp_path / "ff"), out,
                             Recipe(weights=str(i3d_weights), **TINY), device="cpu",
                             start_now=False)
    assert json.loads((path / "run.json").read_text())["kind"] == "features"
    assert run_main(path, Flag(after=lambda: (out / "clip_000.npy").exists())) == 0
    assert [e["status"] for e in read_events(path / "events.jsonl") if e["type"] == "status"] == ["stopped"]
    assert run_status(path) == "stopped"
    assert run_main(path, Flag()) == 0
    events = read_events(path / "events.jsonl")
    assert [e["status"] for e in events if e["type"] == "status"] == ["stopped", "finished"]
    assert [e["resumed_step"] for e in events if e["type"] == "start"] == [None, 0]
    beats = [e for e in events if e["type"] == "heartbeat"]
    assert beats[-1]["step"] == beats[-1]["total_steps"] == 4
    from aqa.errors import RunError
    from aqa.jobs import rerun
    with pytest.raises(RunError, match="feature extraction"):
        rerun(path)
    ds = built("folder_features", tmp_path / "ff", tmp_path, clip_num=3)
    assert ds.dim == 1024 and ds.recipe["clip_len"] == 8 and ds[0]["features"].shape == (3, 1024)
    check_recipe(ds.recipe, out)


def test_cli_extract_runs_in_the_queue_and_exit_codes(tmp_path, runs_dir, capsys):
    info = make_rg(tmp_path / "rg", n_train=1, n_test=1, dim=4, features="unused")
    make_program_videos(tmp_path / "rg" / "videos", [n for s in ("train", "test") for n, *_ in info[s]], 12)
    out = tmp_path / "rg" / "i3d"
    args = ["features", "extract", "--dataset", "rg", "--data-root", str(tmp_path / "rg"),
            "--out", str(out), "--backbone", "i3d", "--weights", "", "--clip-len", "8", "--stride", "4",
            "--frame-size", "32", "--device", "cpu"]
    assert cli_main(args + ["--follow"]) == 0
    assert "run finished: 2 videos" in capsys.readouterr().out
    ds = built("rg", tmp_path / "rg", tmp_path, features="i3d", split="test", train=False)
    assert ds[0]["features"].shape == (2, 1024)
    assert cli_main(["features", "recipe", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["weights"] == "random:i3d:seed=0"
    bad = {"--dataset": "mtl_aqa", "--backbone": "vit", "--clip-len": "2", "--data-root": str(tmp_path / "nope")}
    for flag, value in bad.items():
        a = list(args)
        a[a.index(flag) + 1] = value
        assert cli_main(a) == 2, flag
        assert "error:" in capsys.readouterr().err
    a = list(args)
    a[a.index("--stride") + 1] = "8"
    assert cli_main(a) == 2  # the folder holds stride-4 features
    assert "another recipe" in capsys.readouterr().err
    a = list(args)
    a[a.index("--weights") + 1] = str(tmp_path / "missing.pt")
    assert cli_main(a) == 2 and "no such file" in capsys.readouterr().err
    assert cli_main(["features", "recipe", str(tmp_path)]) == 2


def test_doctor_reports_feature_files(tmp_path, capsys):
    make_rg(tmp_path / "rg", apparatus=("Ball", "Hoop"), n_train=3, n_test=1, dim=4)
    root = str(tmp_path / "rg")
    base = ["doctor", "--dataset", "rg", "--data-root", root, "--set", "apparatus=all",
            "--runs-dir", str(tmp_path / "runs")]
    assert cli_main(base) == 0
    assert "D = 4, no recipe.json" in capsys.readouterr().out
    folder = tmp_path / "rg" / RG_FEATURES
    (folder / "Hoop_002.npy").unlink()
    np.save(folder / "Ball_001.npy", np.ones((3, 5), np.float32))
    (folder / "Ball_003.npy").write_bytes(b"")
    (folder / "recipe.json").write_text(json.dumps({"backbone": "i3d", "clip_len": 32, "stride": 16,
                                                    "weights": "x", "dim": 4}))
    assert cli_main(base + ["--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["missing_count"] == 1 and report["corrupt_count"] == 2
    assert any("D = 5, the other programs have D = 4" in c for c in report["corrupt"])
    assert any("empty file" in c for c in report["corrupt"])
    assert report["fix"].startswith("python -m aqa features extract --dataset rg")
    assert "--backbone i3d --clip-len 32 --stride 16" in report["fix"]
    assert report["present"] == {"train": 3, "test": 2}


def test_items_do_not_share_memory_with_the_cache(tmp_path):
    make_rg(tmp_path / "rg", n_train=2, n_test=1, dim=4, t_range=(6, 6))
    ds = built("rg", tmp_path / "rg", tmp_path, clip_num=6)  # T == clip_num: the whole program
    first = ds[0]["features"]
    first.zero_()
    assert ds[0]["features"].abs().sum() > 0
    te = built("rg", tmp_path / "rg", tmp_path, split="test", train=False)
    te[0]["features"].zero_()
    assert te[0]["features"].abs().sum() > 0 and len(te._cache) == 1


def test_extract_video_with_a_recorded_recipe(tmp_path, programs, i3d_weights):
    """What the Score page does: extract an upload with the recipe a model was trained on."""
    import shutil

    from aqa.features import recipe_from_record

    weights = tmp_path / "w.pt"
    shutil.copy(i3d_weights, weights)
    recipe = Recipe(weights=str(weights), **TINY)
    extract_all([("p0", programs[0])], tmp_path / "f", recipe, log=lambda s: None)
    record = recipe_of(tmp_path / "f")
    assert recipe_from_record(record) == recipe.resolved()
    again = extract_video(programs[0], record, "cpu")
    np.testing.assert_allclose(again, np.load(tmp_path / "f" / "p0.npy"), rtol=1e-4, atol=1e-5)
    torch.save({k: v + 1 for k, v in torch.load(weights).items()}, weights)  # the file changed
    with pytest.raises(CheckpointError, match="features were made with"):
        extract_video(programs[0], record, "cpu")
    with pytest.raises(DatasetError, match="not made by `aqa features extract`"):
        recipe_from_record(None)


def test_two_workers_write_the_same_files(tmp_path, programs, i3d_weights):
    recipe = Recipe(weights=str(i3d_weights), **TINY)
    items = [(p.stem, p) for p in programs]
    one = extract_all(items, tmp_path / "one", recipe, log=lambda s: None)
    two = extract_all(items, tmp_path / "two", recipe, devices=("cpu", "cpu"), log=lambda s: None)
    assert one["done"] == two["done"] == 3
    for name, _ in items:
        np.testing.assert_allclose(np.load(tmp_path / "two" / f"{name}.npy"),
                                   np.load(tmp_path / "one" / f"{name}.npy"), rtol=1e-4, atol=1e-5)


def test_device_flags(tmp_path, capsys):
    from aqa.features.submit import gpus_for
    from aqa.jobs.gpus import probe_gpus

    assert gpus_for("cpu") is None and gpus_for("cuda:0,cuda:2") == "0,2"
    with pytest.raises(ConfigError, match="cuda:N"):
        gpus_for("gpu0")
    if probe_gpus():
        assert gpus_for("cuda") == "1" and gpus_for("auto") == "1"
    else:
        assert gpus_for("auto") is None
        with pytest.raises(ConfigError, match="no GPU"):
            gpus_for("cuda")
