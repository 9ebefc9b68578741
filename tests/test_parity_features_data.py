"""Data parity of the feature datasets with the official GDLT loader (xuangch/CVPR22_GDLT @b9aa9ef,
datasets.py ``RGDataset``) and CoFInAl's (ZhouKanglei/CoFInAl_AQA @fe1f4c1, datasets.py, its
TES/PCS branch for Fis-V): what each hands the model for the files tests/parity_features_inputs.py
writes.

The literals below were printed by a runner outside the repository
(/work/scratch/features/run_official_data.py) that writes those files, imports the two official
``datasets.py`` files unchanged, and reads: ``RGDataset(feat, label_file, clip_num=6,
action_type=..., score_type=..., train=...).labels`` (scaled by the class's own ``normalize_score``,
i.e. /25), ``np.random.seed(0)`` then ``ds[idx]`` for idx 0..3 over three epochs on the Ball
training routines (the window start found by matching the output against the file's rows, the
output's float64 sum), 3000 draws of a T = 12 routine after ``np.random.seed(1)`` (the starts
seen), the test items, and ``clip_num=68`` (the official --clip-num default) on Hoop.

Our items carry raw points; GDLT's /25 is the method's business, so labels are compared as
``sample.score / 25``. Our training window comes from our own seeded streams, not numpy's global
RNG, so the draw is compared as a rule: ``window_start`` with ``official=True`` fed a legacy
``RandomState(0)`` makes the official starts, and ``crop_or_pad`` at those starts makes the
official windows (exact sums, zero padding, shapes).
"""

import numpy as np
import pytest

from aqa.data.features import crop_or_pad, window_start
from tests.parity_features_inputs import CLIP_NUM, write_inputs
from tests.test_features import built

OFFICIAL_LABELS = {  # RGDataset(...).labels, /25 (GDLT); fisv: CoFInAl's action_type TES/PCS
    "Ball/difficulty/train": [0.31372, 0.47052, 0.41392, 0.26696000000000003],
    "Ball/difficulty/test": [0.41656, 0.20379999999999998],
    "Ball/execution/train": [0.22864, 0.19012, 0.19996, 0.18975999999999998],
    "Ball/execution/test": [0.17116, 0.16936],
    "Ball/total/train": [0.5183599999999999, 0.6606399999999999, 0.60188, 0.44472],
    "Ball/total/test": [0.56372, 0.34915999999999997],
    "Hoop/difficulty/train": [0.36436, 0.37348, 0.12188, 0.1884],
    "Hoop/difficulty/test": [0.14096, 0.40700000000000003],
    "Hoop/execution/train": [0.32248, 0.22527999999999998, 0.25251999999999997, 0.33992],
    "Hoop/execution/test": [0.24688, 0.272],
    "Hoop/total/train": [0.68684, 0.5747599999999999, 0.37439999999999996, 0.52832],
    "Hoop/total/test": [0.38783999999999996, 0.679],
    "all/total/train": [0.5183599999999999, 0.6606399999999999, 0.60188, 0.44472, 0.68684,
                        0.5747599999999999, 0.37439999999999996, 0.52832],
    "fisv/tes/train": [0.9664, 0.8748, 1.104, 0.924],
    "fisv/tes/test": [0.9743999999999999, 0.9404],
    "fisv/pcs/train": [0.958, 0.8059999999999999, 1.4368, 0.6784],
    "fisv/pcs/test": [1.4804, 0.6668000000000001],
}
OFFICIAL_NAMES = {"Ball": ["Ball_001", "Ball_002", "Ball_003", "Ball_004"],
                  "all": ["Ball_001", "Ball_002", "Ball_003", "Ball_004",
                          "Hoop_001", "Hoop_002", "Hoop_003", "Hoop_004"]}
# np.random.seed(0); three epochs of ds[0..3] (Ball train, T = 6, 5, 12, 9, clip_num 6):
# (name, window start, float64 sum of the (6, 8) float32 output)
OFFICIAL_TRAIN_ITEMS = [
    ("Ball_001", 0, 9.73369293473661), ("Ball_002", 0, -4.962573140859604),
    ("Ball_003", 4, 10.04540986660868), ("Ball_004", 1, -2.1741912737488747),
    ("Ball_001", 0, 9.73369293473661), ("Ball_002", 0, -4.962573140859604),
    ("Ball_003", 0, -2.3162804543972015), ("Ball_004", 1, -2.1741912737488747),
    ("Ball_001", 0, 9.73369293473661), ("Ball_002", 0, -4.962573140859604),
    ("Ball_003", 3, 2.369071745313704), ("Ball_004", 1, -2.1741912737488747),
]
OFFICIAL_SUPPORT_T12 = [0, 1, 2, 3, 4, 5]  # starts seen in 3000 draws, T = 12, clip_num 6
OFFICIAL_TEST_SHAPES = {"Ball_005": (10, 8), "Ball_006": (12, 8)}  # equal to the file's rows
OFFICIAL_HOOP_CLIP68 = [3.536384589970112, -8.894083386287093, -4.979750930797309,
                        0.20414289832115173]  # float64 sums of the (68, 8) padded outputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity_features")
    write_inputs(root)
    return root


@pytest.mark.parametrize("key", sorted(OFFICIAL_LABELS))
def test_labels_as_official(inputs, tmp_path, key):
    app, target, split = key.split("/")
    if app == "fisv":
        ds = built("fisv", inputs / "fisv", tmp_path, split=split, train=split == "train",
                   features="swintx_avg_fps25_clip32", target=target, clip_num=CLIP_NUM)
    else:
        ds = built("rg", inputs / "rg", tmp_path, split=split, train=split == "train",
                   apparatus=app, target=target, clip_num=CLIP_NUM)
    assert [s.score / 25 for s in ds.samples] == OFFICIAL_LABELS[key]  # exact
    if app in OFFICIAL_NAMES and split == "train":
        assert [s.id for s in ds.samples] == OFFICIAL_NAMES[app]


def test_window_draws_and_contents_as_official(inputs, tmp_path):
    ds = built("rg", inputs / "rg", tmp_path, clip_num=CLIP_NUM, official_window=True)
    feats = [np.load(s.meta["features"]) for s in ds.samples]
    legacy = np.random.RandomState(0)  # what np.random.seed(0) seeds
    got = []
    for epoch in range(3):
        for s, full in zip(ds.samples, feats):
            start = window_start(legacy, len(full), CLIP_NUM, official=True)
            win, n = crop_or_pad(full, CLIP_NUM, start)
            assert win.shape == (CLIP_NUM, 8) and win.dtype == np.float32
            assert n == min(len(full), CLIP_NUM) and not win[n:].any()
            got.append((s.id, start, float(win.astype(np.float64).sum())))
    assert got == OFFICIAL_TRAIN_ITEMS


def test_start_support_official_flag_and_default(inputs, tmp_path):
    rng = np.random.default_rng(0)
    official = sorted({window_start(rng, 12, CLIP_NUM, official=True) for _ in range(3000)})
    assert official == OFFICIAL_SUPPORT_T12
    ours = sorted({window_start(rng, 12, CLIP_NUM) for _ in range(3000)})
    assert ours == OFFICIAL_SUPPORT_T12 + [6]  # the default also draws the last window
    ds = built("rg", inputs / "rg", tmp_path, clip_num=CLIP_NUM, official_window=True)
    i = [s.id for s in ds.samples].index("Ball_003")
    full = np.load(ds.samples[i].meta["features"])
    seen = set()
    for _ in range(300):  # the dataset's own windows: official starts only, official contents
        x = ds[i]["features"].numpy()
        start = next(k for k in range(len(full) - CLIP_NUM + 1) if np.array_equal(full[k:k + CLIP_NUM], x))
        seen.add(start)
    assert sorted(seen) == OFFICIAL_SUPPORT_T12


def test_test_items_and_default_clip_num_padding_as_official(inputs, tmp_path):
    te = built("rg", inputs / "rg", tmp_path, split="test", train=False, clip_num=CLIP_NUM)
    for i, s in enumerate(te.samples):
        it = te[i]
        assert tuple(it["features"].shape) == OFFICIAL_TEST_SHAPES[s.id]
        assert np.array_equal(it["features"].numpy(), np.load(s.meta["features"]))
        assert it["length"].item() == OFFICIAL_TEST_SHAPES[s.id][0]
    hoop = built("rg", inputs / "rg", tmp_path, apparatus="Hoop")  # data.clip_num default 68
    sums = []
    for i in range(len(hoop)):
        x = hoop[i]["features"]
        assert tuple(x.shape) == (68, 8)
        sums.append(float(x.double().sum()))
    assert sums == OFFICIAL_HOOP_CLIP68


# ----------------------------------------------------------------- the extractor's frames
# GDLT's extractor (xuangch/CVPR22_GDLT @b9aa9ef rg_swintx.py, class VideoData) run by a runner
# outside the repository (/work/scratch/features/run_official_extractor.py): mmaction stubbed
# (imported, never called), module globals args/pool_save set, VideoData(videos, 32, None)[i] on
# the lossless videos tests/parity_features_inputs.write_extractor_inputs writes (70 and 73
# frames). Each clip of its output (N, 3, 32, 224, 224) float32: sha256 of the contiguous bytes.
OFFICIAL_EXTRACTOR = {
    "Ball_001": ["57063d3973b3bd0a581c15227ca2790d7d6a619eb57073c0227c3c4daef40242",
                 "4c2b160f384a2d7793e86557b05dfba37f86eb0bea7672fef372c4f47cba6e39"],
    "Hoop_001": ["38aafbb91eeedae9340fb21bd66a356d1b02766cde44cf24eb4482238037ee15",
                 "50040c347766e0736549448a6d04ea1395ace90f0e24fbfb61a9626c98b52943"],
}


def test_extractor_frames_and_windows_as_gdlts(tmp_path):
    """``--frames gdlt --clip-len 32 --stride 32 --align center --norm imagenet`` hands the
    backbone what GDLT's extractor hands its Video Swin: the same windows, the same float32
    input, byte for byte (the backbone itself, mmaction's Swin-B, is not shipped)."""
    import hashlib

    import torch

    from aqa.features.extract import NORMS, Recipe, clip_batches, normalise
    from tests.parity_features_inputs import EXTRACTOR_CLIP, write_extractor_inputs

    recipe = Recipe(frames="gdlt", clip_len=EXTRACTOR_CLIP, stride=EXTRACTOR_CLIP, align="center",
                    normalisation="imagenet").resolved()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in NORMS["imagenet"])
    for path in write_extractor_inputs(tmp_path):
        clips = torch.cat([c for _, _, c in clip_batches(path, recipe, batch_clips=1)])
        x = normalise(clips, mean, std)
        assert tuple(x.shape) == (2, 3, 32, 224, 224) and x.dtype == torch.float32
        assert [hashlib.sha256(x[k].contiguous().numpy().tobytes()).hexdigest()
                for k in range(len(x))] == OFFICIAL_EXTRACTOR[path.stem]
