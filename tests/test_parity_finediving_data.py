"""Data parity with the official FineDiving loader: what ``FineDiving_Pair_Dataset`` hands the
model for the files of ``tests/finediving_fixture.py`` (``FIXTURE`` below).

Reference: xujinglin/FineDiving @a2b8057 (``datasets/FineDiving_Pair.py``, the transforms of
``tools/builder.py`` ``get_video_trans``: Resize((200, 112)), CenterCrop(112) / flip +
RandomCrop(112)) with hassony2/torch_videovision @785a810, run on the CPU by a runner script
outside the repository: ``make_finediving(root, **FIXTURE)``, then ``FineDiving_Pair_Dataset``
built as FineDiving_TSA.yaml says (frame_length 96, voter_number 10, action_number_choosing,
seed 0) with ``np.int`` aliased to ``int``, ``skimage`` and the models stubbed (the data path
does not use them). It recorded, per dive, the frame numbers ``load_video`` opened (through
``PIL.Image.open``), the transits and frame labels it returned, and the uint8 levels of its
normalised test-transform clip (``(v * std + mean) * 255`` rounded); the exemplar candidates of
``action_number_dict``; ``train_ds[i]`` under ``random.seed(5)`` with every ``random.random``
/ ``random.randint`` recorded. numpy 2.4.6 and numpy 1.26.4 gave identical output.
"""

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from aqa.data.exemplars import choose_exemplars, pool_by
from aqa.data.transforms import crop, hflip
from aqa.registry import DATASETS
from tests.finediving_fixture import make_finediving

FIXTURE = {"seed": 3, "size": (114, 64)}

# id: (first frame number, sha256 of the 96 positions "p0,p1,...", transits, label run lengths
# of steps 0/1/2 over the 96 frames, sha256 of the uint8 test clip (3, 96, 112, 112))
DIVES = {
    '01_0': (1713, '929c34d26ec979e2ab95eb14006959ecd30f49c9c4bb37c3ae8d709536281501',
             (22, 61), (23, 39, 34),
             'cc191b39520e89ad614048b992f2e72d094d91efd6634f98daac32f026400d61'),
    'FINADivingWorldCup2021_Men3m_final_r1_1': (
        11643, '5a44d1321e6e1755438fced5f7ff3bfdb3c141116cd8180e7a9000e9e10003de',
        (19, 58), (20, 39, 37),
        '84608e9597cd8cb4deeba542442b4e98aca37b891fc36c4f0de5229d8f516d0d'),
    '02_2': (9581, '59ef2af3b51c6fd4be71ae5b73d740f07fc78b89fa1ea18044688e78921cb528',
             (23, 60), (24, 37, 35),
             '703b3b47478f530642516d13f6ec1b439d95eeb01a498445ee04a91b04dd40cb'),
    'FullMenSynchronised10mPlatform_Tokyo2020Replays_2_3': (
        2274, 'c11d559b88866bd467da3980ca697684b9e47d2b8fda371deb6927d398e079d9',
        (26, 63), (27, 37, 32),
        'e830fca7e9817a1ff556c5dbc2a47900f6f412d2eee3cdc11b67502adab2db71'),
    '01_4': (8613, '367cd1807ee9a26bb3c3dcc5cd7e71d28c546a2f68b8a83361222223b7044bbe',
             (30, 68), (31, 38, 27),
             '16952959229b9a54a437d9e69c7ff28958dd016b587ab159138f31598a647508'),
    'FINADivingWorldCup2021_Men3m_final_r1_5': (
        19125, '9660be737a835f2c00e7c0a3eb7e6ebcee1cab1bd58dd9e3784e5885baf9d50d',
        (33, 61), (34, 28, 34),
        '8b5a9932718d6aa2abe7208d99710d3c2aa180814dee1a89364ba1a5de9419d5'),
    '02_6': (13924, '9b1dbe7f64372c4d6658d06386b5cb92299a42f3f11a863af789bfb18441e2c6',
             (35, 62), (36, 27, 33),
             '99db218d2958973db0457d16b7b307d68176f882b5f1899515652e79c6852e29'),
    'FullMenSynchronised10mPlatform_Tokyo2020Replays_2_7': (
        19469, 'ab84a640bb44e00bc6faf887e6ef040a82a8abc69a5282e98489b843a35cc562',
        (36, 61), (37, 25, 34),
        '731c69cb91eca990412f3362d767343b06086d466638bf6f8e9450e5bd6a1b2d'),
    '01_8': (17834, '0ad1bd2867e9bb93340f98e2783234d5e608f17694b98c8e0d09ec1c9c00ab25',
             (30, 67), (31, 37, 28),
             'de87ad4be4399ff245ee47c01c290d92a7f55969dda07f4186fc98e8d4bdf54d'),
}
# two of them in full: 125 files (96 of them read) and 63 files (some read twice)
POSITIONS = {
    '01_0': [0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 26, 27, 28,
             30, 31, 32, 33, 35, 36, 37, 39, 40, 41, 43, 44, 45, 46, 48, 49, 50, 52, 53, 54, 56,
             57, 58, 60, 61, 62, 63, 65, 66, 67, 69, 70, 71, 73, 74, 75, 77, 78, 79, 80, 82, 83,
             84, 86, 87, 88, 90, 91, 92, 93, 95, 96, 97, 99, 100, 101, 103, 104, 105, 107, 108,
             109, 110, 112, 113, 114, 116, 117, 118, 120, 121, 122, 124],
    '01_8': [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9, 10, 11, 11, 12, 13, 13, 14, 15, 15,
             16, 16, 17, 18, 18, 19, 20, 20, 21, 22, 22, 23, 24, 24, 25, 26, 26, 27, 28, 28, 29,
             30, 30, 31, 31, 32, 33, 33, 34, 35, 35, 36, 37, 37, 38, 39, 39, 40, 41, 41, 42, 43,
             43, 44, 45, 45, 46, 46, 47, 48, 48, 49, 50, 50, 51, 52, 52, 53, 54, 54, 55, 56, 56,
             57, 58, 58, 59, 60, 60, 61, 62],
}
# the test exemplars the official code can draw (action_number_dict[dive number]); the last
# test dive's dive number is not in the training split: the official test code raises
# KeyError '5253B' there
TEST_CANDIDATES = {
    '02_6': {'01_0', 'FullMenSynchronised10mPlatform_Tokyo2020Replays_2_3'},
    'FullMenSynchronised10mPlatform_Tokyo2020Replays_2_7': {
        '01_4', 'FINADivingWorldCup2021_Men3m_final_r1_1'},
}
TRAIN_CANDIDATES = {  # training: the query's group without the query
    '01_0': {'FullMenSynchronised10mPlatform_Tokyo2020Replays_2_3'},
    'FINADivingWorldCup2021_Men3m_final_r1_1': {'01_4'},
    '02_2': {'FINADivingWorldCup2021_Men3m_final_r1_5'},
    'FullMenSynchronised10mPlatform_Tokyo2020Replays_2_3': {'01_0'},
    '01_4': {'FINADivingWorldCup2021_Men3m_final_r1_1'},
    'FINADivingWorldCup2021_Men3m_final_r1_5': {'02_2'},
}
# train_ds[i] under random.seed(5): (query, its flip draw, crop top y1; exemplar, flip, y1,
# sha256 of the query's and the exemplar's uint8 clips). Crop x1 is always 0 (112 - 112).
TRAIN = [
    ('01_0', 0.6229016948897019, 88, 'FullMenSynchronised10mPlatform_Tokyo2020Replays_2_3',
     0.8403481205226678, 83,
     'd219cba21da948fee59897dfe39752fe3613a80cc73027544f9737958452785b',
     '5f8434ead51be8e18a05f8c5b7942b51637fcbcf2ee0bbee8122e3b4d08f82e3'),
    ('FullMenSynchronised10mPlatform_Tokyo2020Replays_2_3', 0.05185325369909766, 14, '01_0',
     0.46906904778216374, 48,
     '2e85ea68b6267d391069835f09bd911a27dfd9f016eb44ab9365ce3d34ae4555',
     'af522572e2b66f96a554bdd35cc740391c76fb2887021c51e298a4a8d2ef5205'),
]


def sha(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def fd(tmp_path_factory):
    root = tmp_path_factory.mktemp("finediving")
    make_finediving(root, **FIXTURE)
    entry = DATASETS.get("finediving")
    cfg = entry.resolve(replace(entry.config_cls(), root=str(root), disk_cache="off"),
                        tmp_path_factory.mktemp("ws"))
    return entry, cfg


def test_sampled_frames_transits_and_labels(fd):
    entry, cfg = fd
    samples = entry.samples(cfg, "train") + entry.samples(cfg, "test")
    assert sorted(s.id for s in samples) == sorted(DIVES)
    for s in samples:
        first, pos_sha, transits, runs, _ = DIVES[s.id]
        positions = (s.meta["frame_numbers"] - first).tolist()
        assert sha(",".join(map(str, positions)).encode()) == pos_sha, s.id
        assert s.frames.files == tuple(f"{first + p:05d}.jpg" for p in positions)
        if s.id in POSITIONS:
            assert positions == POSITIONS[s.id]
        assert s.meta["transits"].tolist() == list(transits), s.id
        assert s.meta["frame_labels"].tolist() == [0] * runs[0] + [1] * runs[1] + [2] * runs[2]


def test_test_transform_clip(fd):
    entry, cfg = fd
    for split in ("train", "test"):
        ds = entry.build(cfg, split, train=False)
        for i, s in enumerate(ds.samples):
            item = ds[i]
            assert tuple(item["video"].shape) == (3, 96, 112, 112)
            assert sha(item["video"].numpy()) == DIVES[s.id][4], s.id
            assert item["transits"].tolist() == list(DIVES[s.id][2])


def test_train_transform_with_the_official_draws(fd):
    entry, cfg = fd
    ds = entry.build(cfg, "train", train=False)  # decoded clip; the draws applied below
    ids = [s.id for s in ds.samples]

    def clip(sid, flip_draw, top):
        c = torch.from_numpy(ds.clip(ids.index(sid))).permute(3, 0, 1, 2)  # (C, T, H, W)
        c = hflip(c) if flip_draw < 0.5 else c  # RandomHorizontalFlip: random() < 0.5
        return crop(c, top, 0, 112, 112)

    for query, qflip, qtop, exemplar, eflip, etop, qsha, esha in TRAIN:
        assert sha(clip(query, qflip, qtop).numpy()) == qsha
        assert sha(clip(exemplar, eflip, etop).numpy()) == esha


def test_exemplar_candidates_by_dive_number(fd):
    entry, cfg = fd
    train, test = entry.samples(cfg, "train"), entry.samples(cfg, "test")
    pool = pool_by(train, "dive_number")
    rng = np.random.default_rng(0)
    for q in test:
        chosen = {s.id for s in choose_exemplars(q, pool, 10, rng).samples}
        if q.id in TEST_CANDIDATES:  # a group of <= 10: the official draws all of it too
            assert chosen == TEST_CANDIDATES[q.id]
        else:  # the official KeyError; ours falls back to the whole training split
            assert q.meta["dive_number"] == "5253B" and chosen == {s.id for s in train}
    for q in train:
        chosen = {s.id for s in choose_exemplars(q, pool, 10, rng).samples}
        assert chosen == TRAIN_CANDIDATES[q.id]
