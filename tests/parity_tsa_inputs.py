"""Inputs for the TSA-Net / Plain-Net parity tests (tests/test_parity_tsa.py).

What our test code hands the official implementation (Shunli-Wang/TSA-Net @8e2c36d); the
reference numbers in the tests were computed by the official code on exactly these inputs, so
everything here must stay deterministic (docs/parity.md says how to regenerate them):

- :func:`random_quads`: seeded integer corner boxes in 640x360 pixels (FR-FS's SiamMask layout):
  rotated rectangles, random quadrilaterals (crossed ones too), axis-aligned and tiny boxes,
  many reaching outside the frame;
- :func:`moving_boxes`: one rotated box per frame that moves, turns and changes size;
- :func:`write_frfs`: an FR-FS folder (``Images/<key>/*.jpg`` at 455x256, so the official
  loader's random resize filter is a no-op, ``Train.csv``/``Test.csv``, ``FRFS_Boxes.json`` with
  frame 0's corners 3 and 4 the other way round, as in the real file);
- :func:`official_tsa_weights`: the official ``best.pt`` dict of seeded, conditioned weights
  (the head's last bias lowered by 4 so the fall probabilities are mid-range, not saturated);
- :func:`save_like_numpy1`: ``torch.save`` as a 2021 training run wrote it: numpy scalars
  pickled under numpy 1.x's names (``numpy.core.multiarray.scalar``), storages tagged ``cuda:0``.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import torch

from tests.parity_inputs import condition, moving_frames

FRAME_W, FRAME_H = 640, 360  # the frame the FR-FS boxes measure (the official W_img, H_img)
NUM_FRAMES = 103


def _rect(cx: float, cy: float, w: float, h: float, angle: float) -> np.ndarray:
    """A rotated rectangle's corners (4, 2), clockwise from the top left before rotation."""
    c, s = np.cos(angle), np.sin(angle)
    local = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
    return local @ np.array([[c, s], [-s, c]]) + [cx, cy]


def random_quads(n: int, seed: int) -> np.ndarray:
    """(n, 8) int64 corner boxes x1, y1, ..., x4, y4 in 640x360 pixels; kinds cycle through
    rotated rectangles (SiamMask-like), random quadrilaterals (crossed ones included),
    axis-aligned boxes and tiny boxes (a cell, a line), many reaching outside the frame."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 4, 2))
    for i in range(n):
        kind = i % 5
        if kind in (0, 1):  # rotated rectangle
            out[i] = _rect(rng.uniform(-60, 700), rng.uniform(-40, 400), rng.uniform(20, 420),
                           rng.uniform(20, 320), rng.uniform(0, np.pi))
        elif kind == 2:  # any four points
            out[i] = rng.uniform([-120, -80], [760, 440], (4, 2))
        elif kind == 3:  # axis-aligned
            x0, y0 = rng.uniform(-50, 600), rng.uniform(-30, 330)
            x1, y1 = x0 + rng.uniform(0, 400), y0 + rng.uniform(0, 250)
            out[i] = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
        else:  # tiny: within a cell or two
            out[i] = rng.uniform(0, 640, 2) * [1, 360 / 640] + rng.uniform(-40, 40, (4, 2))
    return np.rint(out).astype(np.int64).reshape(n, 8)


def moving_boxes(num_frames: int, seed: int) -> np.ndarray:
    """(num_frames, 8) int64: a rotated box that drifts, turns and breathes; frame 0 (the
    tracker's initial box) is 1.6 times larger and lists its corners 3 and 4 the other way round
    (as FRFS_Boxes.json does), so the corner swap changes the first tube step."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(120, 520), rng.uniform(90, 270)
    vx, vy = rng.uniform(-3, 3), rng.uniform(-1.5, 1.5)
    a0, va = rng.uniform(0, np.pi), rng.uniform(0.01, 0.05)
    rows = []
    for t in range(num_frames):
        w = 150 + 40 * np.sin(0.1 * t)
        h = 110 + 30 * np.cos(0.07 * t)
        grow = 1.6 if t == 0 else 1.0
        rows.append(_rect(x0 + vx * t, y0 + vy * t, w * grow, h * grow, a0 + va * t))
    boxes = np.rint(np.array(rows)).astype(np.int64)  # (T, 4, 2)
    boxes[0, [2, 3]] = boxes[0, [3, 2]]
    return boxes.reshape(num_frames, 8)


# ------------------------------------------------------------------ FR-FS folder


FRFS_TRAIN = {"tr_fall": 1.0}  # one training video: a batch of 1 keeps the step cheap
FRFS_TEST = {"te_fall": 1.0, "te_land": 0.0}


def write_frfs(root: Path, train: dict = FRFS_TRAIN, test: dict = FRFS_TEST,
               num_frames: int = NUM_FRAMES) -> Path:
    """An FR-FS folder our ``frfs`` dataset and the official loader both read (the official one
    reads ``Train.xls``/``Test.xls``; its runner reads these CSVs in their place)."""
    from PIL import Image

    root = Path(root)
    (root / "Images").mkdir(parents=True, exist_ok=True)
    boxes = {}
    for n, (split, rows) in enumerate((("Train", train), ("Test", test))):
        lines = "".join(f"{k},{v}\n" for k, v in rows.items())
        (root / f"{split}.csv").write_text("key,label\n" + lines)
        for m, key in enumerate(rows):
            seed = 100 * n + m
            folder = root / "Images" / key
            folder.mkdir(exist_ok=True)
            for t, frame in enumerate(moving_frames(num_frames, 256, 455, seed)):
                Image.fromarray(frame).save(folder / f"{t:05d}.jpg", quality=95)
            boxes[key] = moving_boxes(num_frames, seed).tolist()
    (root / "FRFS_Boxes.json").write_text(json.dumps(boxes))
    return root


# ------------------------------------------------------------------ weights


def official_tsa_weights(model: torch.nn.Module, seed: int, tsa: bool = True) -> dict:
    """Condition ``model`` (a TSANet with a 1-output head) from ``seed`` in place and return its
    weights in the official ``best.pt`` layout (``i3d``, ``evaluator``, ``TSA_module`` or None)."""
    condition(model, seed)
    with torch.no_grad():  # the conditioned head says "fall" at p ~ 0.95-0.99, where p is flat;
        model.head.mlp[4].bias -= 4.0  # shifted so the probabilities sit mid-range
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    layers = {"mlp.0": "layer1", "mlp.2": "layer2", "mlp.4": "layer3"}
    return {"i3d": {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")},
            "evaluator": {f"evaluator.{layers[k[5:10]]}.{k.rsplit('.', 1)[1]}": v
                          for k, v in sd.items() if k.startswith("head.")},
            "TSA_module": {f"NL_1D.{k[4:]}": v for k, v in sd.items() if k.startswith("tsa.")}
            if tsa else None}


def save_like_numpy1(obj: dict, path: Path, zip_format: bool = True) -> Path:
    """``torch.save(obj, path)`` as the official runs wrote it: numpy scalars under numpy 1.x's
    global names, every storage tagged ``cuda:0`` (the zip format of torch >= 1.6, or the legacy
    one with ``zip_format=False``): ``tests/legacy_pickle.save_as_numpy1``."""
    from legacy_pickle import save_as_numpy1

    save_as_numpy1(obj, path, legacy=not zip_format)
    return Path(path)


def pickled_globals(path: Path) -> set[str]:
    """The ``module.name`` globals a torch file's pickle names (zip or legacy)."""
    import pickletools
    import zipfile

    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    else:
        data = Path(path).read_bytes()
        for _ in range(3):  # magic, protocol, sys info: three pickles before the object
            f = io.BytesIO(data)
            pickle.load(f)
            data = data[f.tell():]
    names = set()
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        if op.name == "STOP":
            break
    return names
