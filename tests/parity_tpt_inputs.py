"""What tests/test_parity_tpt.py hands the official TPT code (baiyang4/aqa_tpt @cf6d163), and
rebuilds to compare with the numbers it gave.

Deterministic: change anything here and the reference numbers in tests/test_parity_tpt.py must
be regenerated (docs/parity.md, "Regenerating").

- :func:`tpt_model`: our TPTModel (hassony2 I3D, d_model 512, d_ffn 512, 5 queries: the README
  run) with seeded, well-conditioned weights (``parity_inputs.condition``).
- :func:`write_official_checkpoint`: those weights as the official training loop saves them
  (``utils/util.py ResultsHandler._save_check_point``): ``{'optimizer', 'epoch', 'epoch_best',
  'rho_best', 'RL2_min', 'model', 'backbone'}``, ``model`` the PairModel's and ``backbone`` the
  ``I3D_backbone``'s state dict (keys ``backbone.<i3d key>``), the metrics numpy 1.x float64
  scalars (pickled under their numpy 1.x names ``numpy.core.multiarray.scalar``), every storage
  tagged ``cuda:0``. The official loop saves ``model.module.state_dict()`` under DDP, so the real
  keys have no ``module.`` prefix; ``ddp_prefix=True`` writes them with one.
- :func:`write_frames_long`: an MTL-AQA root in TPT's layout (``info/`` with MUSDL's annotation
  pickle, which TPT reads, and the split pickles; ``frames_long/{event:02d}_{idx:02d}/`` with
  109 JPEG frames of 455x256 each), from ``parity_inputs.moving_frames``.
"""

from __future__ import annotations

import contextlib
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from parity_inputs import condition, moving_frames

SEED = 20221023
D_MODEL, D_FFN, QUERIES = 512, 512, 5
PAIR_GAIN = 5.0
CLIP_STARTS = (0, 95)  # the first and last of TPT's 20 clip starts (CPU time; see the test)
FRAMES = 109  # frames_long folders hold >= 109 frames (103 + the train shift of up to 6)
FRAME_W, FRAME_H = 455, 256
FIRST_FILE = 17977  # the README's example file name 01_01/00017977.jpg

# (event, idx): (difficulty, final score). Completeness (score / DD) of the DD-2.0 group is
# 10, 30, 47.5: same-DD differences 17.5, 20 and 37.5 (>= Max 30: the edge-bug pair).
TRAIN = {(1, 1): (2.0, 20.0), (1, 2): (2.0, 60.0), (1, 3): (2.0, 95.0), (1, 4): (3.0, 75.0)}
# test queries: (2, 1) votes with the 3 DD-2.0 samples; (2, 2) with the lone DD-3.0 one,
# padded with 2 DD-2.0 samples at weight 0
TEST = {(2, 1): (2.0, 55.0), (2, 2): (3.0, 80.0)}
VOTERS = 3
# the folder dataset (clips + scores.csv): name -> (difficulty, score, frame seed, split); 103
# frames each (the folder dataset spreads num_frames=103 over a clip: every frame)
FOLDER = {"dive_a": (2.0, 50.0, 200, "train"), "dive_b": (2.0, 60.0, 201, "train"),
          "dive_q": (2.0, 56.0, 202, "test")}


def tpt_model(seed: int = SEED):
    """Our TPTModel at the README size, weights seeded and conditioned."""
    from aqa.models.i3d import I3D
    from aqa.models.tpt import TPTConfig, TPTModel

    torch.manual_seed(seed)
    cfg = TPTConfig(d_model=D_MODEL, d_ffn=D_FFN, num_queries=QUERIES,
                    clip_starts=list(CLIP_STARTS))
    model = TPTModel(I3D("hassony2"), cfg, torch.zeros(16, 2, dtype=torch.float64))
    condition(model, seed)
    with torch.no_grad():
        model.action_decoder.layers[0].temp.fill_(0.07)  # the learnable temperatures, apart
        model.action_decoder.layers[1].temp.fill_(0.11)
        # Random I3D weights give every clip nearly the same feature (parts differ by ~3%), so
        # the pair encoder's first layer is made to compare: W = 5 [A, -A] passes the
        # difference of exemplar and query parts; leaves and deltas then vary with the pair.
        w = model.pair_encoder.mlp[0].weight  # (d, 2d)
        w[:, D_MODEL:] = -w[:, :D_MODEL]
        w.mul_(PAIR_GAIN)
    return model.eval()


def official_parts(model) -> tuple[OrderedDict, OrderedDict]:
    """(PairModel state dict, I3D_backbone state dict) in the official key names."""
    state = model.state_dict()
    pair = OrderedDict((k, v.clone()) for k, v in state.items()
                       if not k.startswith("backbone.") and k != "leaves")
    backbone = OrderedDict((k, v.clone()) for k, v in state.items() if k.startswith("backbone."))
    return pair, backbone


class _Numpy1Pickler(pickle._Pickler):
    """Names numpy's globals the way numpy 1.x did (``numpy.core.*``, moved to ``numpy._core``
    in numpy 2): the same opcodes numpy 1.26 writes for its scalars, dtypes and arrays."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            qual = name or obj.__qualname__
            old = module.replace("numpy._core", "numpy.core", 1)
            self.write(pickle.GLOBAL + f"{old}\n{qual}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


class _Numpy1PickleModule:
    Pickler = _Numpy1Pickler
    Unpickler = pickle.Unpickler
    load = staticmethod(pickle.load)
    __name__ = "pickle"


@contextlib.contextmanager
def _cuda0_tags():
    """Tag every saved storage ``cuda:0``, as the official GPU runs did."""
    original = torch.serialization.location_tag
    torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        yield
    finally:
        torch.serialization.location_tag = original


def numpy1_dump(obj, path: Path, protocol: int = 3) -> None:
    """A plain pickle with numpy 1.x global names (MUSDL's annotation file: protocol 3)."""
    with open(path, "wb") as f:
        _Numpy1Pickler(f, protocol=protocol).dump(obj)


def official_optimizer_state(model) -> dict:
    """A fresh Adam state dict with the official five groups (backbone, action_decoder,
    pair_encoder at 1e-4; cls, reg at 1e-3), as torch 1.7 wrote it."""
    groups, start = [], 0
    for name, lr in (("backbone", 1e-4), ("action_decoder", 1e-4), ("pair_encoder", 1e-4),
                     ("cls", 1e-3), ("reg", 1e-3)):
        n = len(list(getattr(model, name).parameters()))
        groups.append({"lr": lr, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0,
                       "amsgrad": False, "params": list(range(start, start + n))})
        start += n
    return {"state": {}, "param_groups": groups}


def write_official_checkpoint(path: Path, model, epoch: int = 149, ddp_prefix: bool = False) -> Path:
    """``model``'s weights as an official TPT checkpoint file (see the module doc)."""
    pair, backbone = official_parts(model)
    if ddp_prefix:
        pair = OrderedDict(("module." + k, v) for k, v in pair.items())
        backbone = OrderedDict(("module." + k, v) for k, v in backbone.items())
    state = {"optimizer": official_optimizer_state(model), "epoch": epoch,
             "epoch_best": np.float64(epoch), "rho_best": np.float64(0.9421337),
             "RL2_min": np.float64(0.4172), "model": pair, "backbone": backbone}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _cuda0_tags():
        torch.save(state, path, pickle_module=_Numpy1PickleModule, pickle_protocol=2)
    return path


def write_i3d_file(path: Path, model) -> Path:
    """The bare I3D state dict (``model_rgb.pth``'s layout) the official backbone loads first."""
    _, backbone = official_parts(model)
    torch.save(OrderedDict((k[len("backbone."):], v) for k, v in backbone.items()), path)
    return path


def annotation(difficulty: float, score: float, k: int) -> dict:
    """One entry of MUSDL's ``augmented_final_annotations_dict.pkl`` (the file TPT reads)."""
    return {"primary_view": 0, "start_frame": 1000 + 200 * k, "end_frame": 1106 + 200 * k,
            "position": k % 3, "difficulty": difficulty, "armstand": 0, "rotation_type": k % 4,
            "ss_no": 2, "tw_no": 0, "final_score": score,
            "judge_scores": np.full(7, round(score / difficulty / 3 * 2) / 2, dtype=np.float64)}


def write_frames_long(root: Path) -> Path:
    """An MTL-AQA root in TPT's layout holding :data:`TRAIN` and :data:`TEST` (see module doc)."""
    from PIL import Image

    root = Path(root)
    (root / "info").mkdir(parents=True, exist_ok=True)
    samples = {**TRAIN, **TEST}
    ann = {key: annotation(dd, score, k) for k, (key, (dd, score)) in enumerate(samples.items())}
    numpy1_dump(ann, root / "info" / "augmented_final_annotations_dict.pkl")
    with open(root / "info" / "train_split_0.pkl", "wb") as f:
        pickle.dump(list(TRAIN), f, protocol=2)
    with open(root / "info" / "test_split_0.pkl", "wb") as f:
        pickle.dump(list(TEST), f, protocol=2)
    for k, (event, idx) in enumerate(samples):
        folder = root / "frames_long" / f"{event:02d}_{idx:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        frames = moving_frames(FRAMES, FRAME_H, FRAME_W, seed=100 + k)
        for t in range(FRAMES):
            Image.fromarray(frames[t]).save(folder / f"{FIRST_FILE + 300 * k + t:08d}.jpg",
                                            quality=92)
    return root


def write_folder(root: Path) -> Path:
    """A ``folder`` dataset: :data:`FOLDER`'s clips as lossless FFV1 ``.mkv`` (so the decoded
    frames are exactly ``moving_frames``) and ``scores.csv``."""
    import av

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rows = ["video,score,difficulty,split"]
    for name, (dd, score, seed, split) in FOLDER.items():
        frames = moving_frames(103, FRAME_H, FRAME_W, seed)
        with av.open(str(root / f"{name}.mkv"), "w", format="matroska") as c:
            s = c.add_stream("ffv1", rate=25)
            s.width, s.height, s.pix_fmt = FRAME_W, FRAME_H, "bgr0"
            for t, f in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(f, format="rgb24")
                frame.pts = t
                c.mux(s.encode(frame))
            c.mux(s.encode())
        rows.append(f"{name}.mkv,{score},{dd},{split}")
    (root / "scores.csv").write_text("\n".join(rows) + "\n")
    return root
