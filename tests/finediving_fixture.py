"""A tiny FineDiving in the official layout (xujinglin/FineDiving README), written the way the
distributed files are: a deterministic generator for the adapter's tests, the FineDiving TSA
method's tests and the data parity run against the official loader.

    root/FINADiving_MTL_256s/<event>/<idx>/<frame:05d>.jpg   moving frames (tests/parity_inputs)
    root/Annotations/fine-grained_annotation_aqa.pkl          numpy-1 pickle (tests/legacy_pickle)
    root/Annotations/train_split.pkl, test_split.pkl          lists of (event: str, idx: int)

Events alternate between two-digit codes and full names, as the real keys do. The annotation of
a dive is ``[dive_number str, final score float, difficulty float, steps_transit_frames int64
(2,), frames_labels int64 (n_frames,)]``: labels 0 before the first transition, 1 between, 2
after; ``steps_transit_frames`` are the frame numbers of the first frame of steps 2 and 3.
Frame files are numbered from a random first number, one file per label. The first test dives
share their dive number with training dives; with ``unseen_test_dive`` the last test dive has a
dive number no training dive has (the official test code raises KeyError on it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

EVENTS = ("01", "FINADivingWorldCup2021_Men3m_final_r1", "02",
          "FullMenSynchronised10mPlatform_Tokyo2020Replays_2")
DIVES = (("107B", 3.1), ("205B", 3.0), ("305C", 2.8))  # dive number, difficulty
UNSEEN = ("5253B", 3.4)  # a dive number only the test split has
FRAMES_DIR = "FINADiving_MTL_256s"


def make_finediving(root, n_train: int = 6, n_test: int = 3, n_frames: tuple[int, int] = (60, 140),
                    seed: int = 0, size: tuple[int, int] = (80, 45), unseen_test_dive: bool = True,
                    extra_images: dict | None = None, annotations_in_root: bool = False,
                    quality: int = 90) -> dict:
    """Write the dataset under ``root``; returns ``{"train": keys, "test": keys, "annotations":
    the annotation dict as pickled}``. ``n_frames`` is the (low, high) range of a dive's frame
    count; ``size`` is (W, H) of the frames; ``extra_images`` ``{(event, idx): k}`` writes k more
    frame files than the dive has labels (FineDiving issue #1)."""
    from PIL import Image

    from tests.legacy_pickle import dump_as_numpy1
    from tests.parity_inputs import moving_frames

    root = Path(root)
    rng = np.random.default_rng(seed)
    W, H = size
    ann, splits = {}, {"train": [], "test": []}
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        j = i - n_train
        if split == "train":
            dive, dd = DIVES[i % len(DIVES)]
        elif unseen_test_dive and j == n_test - 1:
            dive, dd = UNSEEN
        else:
            dive, dd = DIVES[j % len(DIVES)]
        key = (EVENTS[i % len(EVENTS)], i)
        n = int(rng.integers(n_frames[0], n_frames[1] + 1))
        first = int(rng.integers(1, 20000))
        t1 = int(rng.integers(n // 5, 2 * n // 5))
        t2 = int(rng.integers(3 * n // 5, 4 * n // 5))
        labels = np.zeros(n, dtype=np.int64)
        labels[t1:t2], labels[t2:] = 1, 2
        score = round(float(rng.uniform(8.0, 10.0) * 3 * dd), 2)
        ann[key] = [dive, score, dd, np.array([first + t1, first + t2], dtype=np.int64), labels]
        splits[split].append(key)
        folder = root / FRAMES_DIR / key[0] / str(key[1])
        folder.mkdir(parents=True, exist_ok=True)
        count = n + (extra_images or {}).get(key, 0)
        for k, frame in enumerate(moving_frames(count, H, W, seed=seed * 1000 + i)):
            Image.fromarray(frame).save(folder / f"{first + k:05d}.jpg", quality=quality)
    out = root if annotations_in_root else root / "Annotations"
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in (("fine-grained_annotation_aqa.pkl", ann),
                      ("train_split.pkl", splits["train"]), ("test_split.pkl", splits["test"])):
        with open(out / name, "wb") as f:
            dump_as_numpy1(obj, f, protocol=3)  # Python 3.7's default protocol
    return {"train": splits["train"], "test": splits["test"], "annotations": ann}
