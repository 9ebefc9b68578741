"""The feature files and label files the data parity test (tests/test_parity_features_data.py)
runs the official GDLT and CoFInAl dataset classes on: written by tests/features_fixture.py with
these fixed arguments, so the official run and our test read the same bytes.

RG: Ball and Hoop, 4 train + 2 test routines each, T in 3..12, D = 8, seed 6 (the Ball training
routines have T = 6, 5, 12, 9: with a window of 6 rows one is used whole, one is padded, two
are cropped). Fis-V: 4 train + 2 test programs, T in 3..12, D = 8, seed 2.
"""

from pathlib import Path

from tests.features_fixture import make_fisv_features, make_rg

RG_ARGS = dict(apparatus=("Ball", "Hoop"), n_train=4, n_test=2, t_range=(3, 12), dim=8, seed=6)
FISV_ARGS = dict(n_train=4, n_test=2, t_range=(3, 12), dim=8, seed=2)
CLIP_NUM = 6  # the window the parity runs use (the official default, 68, pads every fixture routine)


def write_inputs(root: str | Path) -> dict:
    root = Path(root)
    return {"rg": make_rg(root / "rg", **RG_ARGS), "fisv": make_fisv_features(root / "fisv", **FISV_ARGS)}


if __name__ == "__main__":
    import sys

    print(write_inputs(sys.argv[1]))


EXTRACTOR_VIDEOS = ["Ball_001", "Hoop_001"]  # 70 and 73 frames, 48 x 64, 25 fps
EXTRACTOR_CLIP = 32  # GDLT's extractor's clip_len


def write_extractor_inputs(root: str | Path) -> list[Path]:
    """The programs the official extractor's frame loader (GDLT's rg_swintx.py ``VideoData``) and
    ours read, in ``<root>/videos``."""
    from tests.features_fixture import make_program_videos

    return make_program_videos(Path(root) / "videos", EXTRACTOR_VIDEOS, num_frames=70,
                               size=(48, 64), seed=11)
