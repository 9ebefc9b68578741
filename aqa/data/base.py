"""What every dataset adapter yields: samples, and a torch Dataset of clips over them.

A :class:`Sample` knows its id, score, difficulty, split and where its frames live: a video
file, or a folder of frame images (JPEG) described by a :class:`FrameSpan` (a numbered pattern
such as ``{:08d}.jpg`` or an explicit sorted file list). ``window_start`` says where a
method's fixed-length window begins inside the span (CoRe's ``end_frame - 103``); without one,
the clip is ``num_frames`` frames spread uniformly over the whole span.

:class:`ClipDataset` decodes a sample's clip (resized in the decoder, see
``aqa.data.transforms``), optionally through an in-memory and an on-disk cache
(``aqa.data.cache``), and yields

    video:      (C, T, H, W) uint8
    score:      float32 scalar
    difficulty: float32 scalar (1.0 where the dataset has none)
    id:         str
    <extra>:    float32 tensors named by ``extra_keys`` (from ``sample.meta``: label,
                judge_scores, ...), the same keys for every item of a dataset
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from aqa.errors import ConfigError, DatasetError, VideoError

SHOW_FIRST = 5  # missing samples named in an error; the count covers all


@dataclass(frozen=True)
class FrameSpan:
    """Frames ``first .. first + count - 1`` of a sample.

    - ``pattern`` set: file ``pattern.format(n)`` in the sample's folder, ``n`` the frame number;
    - ``files`` set: ``files[first + k]`` in the sample's folder (names sorted);
    - neither: frame indices (0-based) of the sample's video file.
    """

    first: int
    count: int
    pattern: str | None = None
    files: tuple[str, ...] | None = None

    def name(self, position: int) -> str:
        if self.files is not None:
            return self.files[self.first + position]
        return self.pattern.format(self.first + position)


@dataclass(frozen=True)
class Sample:
    id: str
    video: Path  # a video file, or a folder of frame images when ``frames`` has a pattern/files
    score: float
    difficulty: float = 1.0
    split: str = "train"
    frames: FrameSpan | None = None  # the sample's frames (None: every frame of the video file)
    window_start: int | None = None  # window start inside the span; None: spread uniformly
    meta: Mapping = field(default_factory=dict, compare=False, hash=False)  # dive_number, class, label...

    @property
    def is_frame_folder(self) -> bool:
        return self.frames is not None and (self.frames.pattern is not None
                                            or self.frames.files is not None)


# ----------------------------------------------------------------- frames of a sample

VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm")  # what the adapters accept as a video


def find_video(folder: Path, stem: str) -> Path | None:
    """``folder/<stem><ext>`` for the first of :data:`VIDEO_EXTS` that exists, else None."""
    for ext in VIDEO_EXTS:
        if (folder / (stem + ext)).is_file():
            return folder / (stem + ext)
    return None


def frame_paths(sample: Sample, positions: Iterable[int] | None = None) -> list[Path]:
    """Paths of the frame files at ``positions`` of a frame-folder sample (all when None)."""
    span = sample.frames
    positions = range(span.count) if positions is None else positions
    return [Path(sample.video) / span.name(p) for p in positions]


_probe_memo: dict[str, int] = {}


def num_available(sample: Sample) -> int:
    """Frames the sample holds: its span's count, or the probed frame count of its video."""
    if sample.frames is not None:
        return sample.frames.count
    try:
        st = os.stat(sample.video)
        key = f"{sample.video}|{st.st_size}|{st.st_mtime_ns}"
    except OSError:
        key = str(sample.video)  # probe raises the VideoError that names the file
    if key not in _probe_memo:
        from aqa import video
        _probe_memo[key] = video.probe(sample.video).num_frames
    return _probe_memo[key]


def read_images(paths: Sequence[Path], size: tuple[int, int] | None,
                interpolation: str = "bilinear", mirror: bool = False) -> np.ndarray:
    """Frame images as uint8 RGB ``(T, H, W, 3)``, resized to ``size=(w, h)`` by PIL.

    JPEGs are decoded at a reduced DCT scale when that is still at least ``size`` (PIL
    ``draft``), which is most of the saving of decoding at a smaller size. Repeated paths are
    read once.
    """
    from PIL import Image

    from aqa.data.transforms import CV2_NEAREST, cv2_nearest, pil_filter

    out: dict[Path, np.ndarray] = {}
    for p in paths:
        if p in out:
            continue
        try:
            with Image.open(p) as im:
                if interpolation == CV2_NEAREST:  # from the full-size decode, as cv2.imread
                    full = np.asarray(im.convert("RGB"), dtype=np.uint8)
                    full = full[:, ::-1] if mirror else full  # flipped before the resize
                    out[p] = np.ascontiguousarray(cv2_nearest(full, size or im.size))
                    continue
                if size is not None and im.format == "JPEG":
                    im.draft("RGB", tuple(size))
                im = im.convert("RGB")
                if size is not None and im.size != tuple(size):
                    im = im.resize(tuple(size), pil_filter(interpolation))
                out[p] = np.asarray(im, dtype=np.uint8)
        except FileNotFoundError:
            raise VideoError(f"{p}: frame file missing; run `python -m aqa doctor` on the "
                             "dataset to list every missing frame") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise VideoError(f"{p}: cannot decode the frame image ({exc}); extract the frames "
                             "again (python -m aqa data extract-frames)") from exc
    return np.stack([out[p] for p in paths])


def decode(sample: Sample, positions: Sequence[int], size: tuple[int, int] | None,
           interpolation: str = "bilinear", video_resize: str = "decord",
           mirror: bool = False) -> np.ndarray:
    """Frames ``positions`` of ``sample`` (positions inside its span), uint8 ``(T, H, W, 3)``.

    Videos are read in one batched call resized in the decoder (``video_resize``: decord's
    filter, or a libswscale filter through PyAV, see ``data.video_resize``); frame folders
    through PIL with ``interpolation``. ``interpolation="cv2_nearest"`` resizes the full-size
    frames by cv2's nearest rule, flipped left-right first when ``mirror`` (PECoP's order).
    """
    if sample.is_frame_folder:
        return read_images(frame_paths(sample, positions), size, interpolation, mirror)
    first = sample.frames.first if sample.frames is not None else 0
    return read_video(sample.video, [first + p for p in positions], size, interpolation,
                      video_resize, mirror)


def read_video(path: str | os.PathLike, indices: Sequence[int], size: tuple[int, int] | None,
               interpolation: str = "bilinear", video_resize: str = "decord",
               mirror: bool = False) -> np.ndarray:
    """Frames ``indices`` of a video file as uint8 ``(T, H, W, 3)`` at ``size=(w, h)``, resized
    the way ``video_resize`` says: ``decord`` (its filter, in the decoder), ``pil`` (decoded at
    full size, then each frame through PIL with ``interpolation``, which is how the official
    loaders resize the frames extracted from a video) or a libswscale filter (PyAV).
    ``interpolation="cv2_nearest"`` (PECoP) always resizes the full-size frames by cv2's nearest
    rule, mirrored first when ``mirror``."""
    from aqa import video
    from aqa.data.transforms import CV2_NEAREST, cv2_nearest

    if interpolation == CV2_NEAREST:
        full = video.read_frames(path, indices, None)
        full = full[:, :, ::-1] if mirror else full
        return np.stack([cv2_nearest(f, size or f.shape[1::-1]) for f in full])
    if size is None or video_resize == "decord":
        return video.read_frames(path, indices, size)
    if video_resize == "pil":
        from aqa.data.transforms import resize_image

        frames = video.read_frames(path, indices, None)
        if (frames.shape[2], frames.shape[1]) == tuple(size):
            return frames
        return np.stack([resize_image(f, size, interpolation) for f in frames])
    return video.read_frames(path, indices, size, interpolation=video_resize)


def load_clip(sample: Sample, positions: Sequence[int], pipeline, video_resize: str = "decord",
              train: bool = False, rng: np.random.Generator | None = None) -> torch.Tensor:
    """The model's uint8 clip ``(C, T, H, W)`` of ``sample`` at ``positions``: decoded and resized
    as the run's ``pipeline`` and ``video_resize`` say (the filter drawn, PECoP's flip before the
    resize), then flipped and cropped. The one clip path of datasets (``ClipDataset.item_at``;
    its cached reads share :func:`decode` and ``Pipeline.apply``), the scorer and evaluation."""
    rng = rng if rng is not None else np.random.default_rng(0)
    interpolation = pipeline.draw_interpolation(rng, train)
    mirror = None
    if pipeline.flip_before_resize:  # drawn now, applied to the full-size frames
        mirror = pipeline.draw_flip(rng, train)
    arr = decode(sample, list(positions), pipeline.decode_size, interpolation, video_resize,
                 mirror=bool(mirror))
    frames = torch.from_numpy(np.ascontiguousarray(arr)).permute(3, 0, 1, 2)  # (C, T, H, W)
    return pipeline.apply(frames, train, rng, mirror).contiguous()


def video_decoder(pipeline, video_resize: str = "decord", interpolation: str | None = None) -> str:
    """What decodes and resizes a video's frames for ``pipeline`` and ``video_resize``
    (:func:`aqa.video.frames_decoder`, plus PIL's or cv2's filter where those resize): recorded
    with what the frames made (a run's ``start`` event, a ``ScoreResult``), because decord's and
    PyAV's resized pixels differ (docs/datasets.md, "decord and PyAV")."""
    from aqa.data.transforms import CV2_NEAREST
    from aqa.video import frames_decoder

    size = pipeline.decode_size
    interpolation = interpolation or pipeline.draw_interpolation(np.random.default_rng(0), False)
    if size is None:
        return frames_decoder(None)
    if interpolation == CV2_NEAREST:
        return f"{frames_decoder(None)} + cv2 nearest"
    if video_resize == "decord":
        return frames_decoder(size)
    if video_resize == "pil":
        return f"{frames_decoder(None)} + PIL {interpolation}"
    return frames_decoder(size, interpolation=video_resize)


def decoder_note(decoder: str, data_cfg) -> str | None:
    """A sentence for the user when videos that ``data.video_resize=decord`` says to resize
    with decord are resized by PyAV instead (decord not importable, or ``AQA_DECODER=pyav``)."""
    if getattr(data_cfg, "video_resize", "decord") != "decord" or not decoder.startswith("pyav ") \
            or not decoder.endswith(("bilinear", "nearest", "bicubic", "area")):
        return None
    from aqa.video import decord_missing
    why = f"decord does not import here ({decord_missing()})" if decord_missing() else \
        "AQA_DECODER=pyav"
    return (f"{why}: videos are resized by {decoder}, whose pixels differ slightly from decord's "
            "(a mean of 0.25 levels; docs/datasets.md); a model trained on decord's frames may "
            "score a little differently")


def check_video_resize(name: str) -> str:
    from aqa.config import choices

    allowed = choices("data", "video_resize")
    if name not in allowed:
        raise ConfigError(f"data.video_resize={name!r}: choose one of {', '.join(allowed)}")
    return name


def window_positions(sample: Sample, num_frames: int, shift: int = 0,
                     available: int | None = None) -> list[int]:
    """The ``num_frames`` positions a clip reads: the window at ``window_start + shift`` (moved
    inside the span; a short span is resampled with repetition), or uniform over the span."""
    from aqa.data.sampling import fit_window
    from aqa.video import sample_indices

    n = num_available(sample) if available is None else available
    if sample.window_start is None:
        return sample_indices(n, num_frames)
    return fit_window(sample.window_start + shift, num_frames, n)


# ----------------------------------------------------------------- missing samples

def missing_files(samples: Sequence[Sample]) -> dict[str, list[Path]]:
    """Sample id -> its missing files (the video, or the frame files of its span).

    Lists each frame folder once, so checking a dataset is one ``listdir`` per folder.
    """
    listing: dict[Path, set[str] | None] = {}
    out: dict[str, list[Path]] = {}
    for s in samples:
        if not s.is_frame_folder:
            if not Path(s.video).is_file():
                out[s.id] = [Path(s.video)]
            continue
        folder = Path(s.video)
        if folder not in listing:
            try:
                listing[folder] = set(os.listdir(folder))
            except OSError:
                listing[folder] = None
        names = listing[folder]
        if names is None:
            out[s.id] = [folder]
            continue
        gone = [folder / s.frames.name(k) for k in range(s.frames.count)
                if s.frames.name(k) not in names]
        if gone or s.frames.count == 0:
            out[s.id] = gone or [folder]
    return out


def keep_present(samples: list[Sample], allow_missing: bool, what: str) -> tuple[list[Sample], list[str]]:
    """``(present samples, ids of excluded ones)``; a DatasetError naming the first few missing
    samples unless ``allow_missing``."""
    gone = missing_files(samples)
    if not gone:
        return samples, []
    if not allow_missing:
        names = ", ".join(f"{sid} ({gone[sid][0]})" for sid in list(gone)[:SHOW_FIRST])
        raise DatasetError(
            f"{len(gone)} of {len(samples)} {what} samples have missing frames or videos, e.g. "
            f"{names}; run `python -m aqa doctor` for the full report, fix the data, or set "
            f"data.allow_missing=true (--allow-missing) to train on the {len(samples) - len(gone)} "
            "that are present")
    return [s for s in samples if s.id not in gone], list(gone)


# ----------------------------------------------------------------- the torch Dataset

class ClipDataset(Dataset):
    """``num_frames`` frames per sample, resized in the decoder, then cropped/flipped.

    Without a ``pipeline`` the frames are resized to ``frame_size x frame_size`` and flipped at
    random when ``hflip`` (the behaviour of the folder dataset). ``jitter`` shifts a sample's
    window by a random ``-jitter..jitter`` frames at train time (CoRe's temporal shift); the
    frames of every possible shift are decoded once, so a cached sample serves all of them.
    ``excluded`` lists the ids of samples dropped because their files are missing.
    """

    def __init__(self, samples: list[Sample], num_frames: int, frame_size: int,
                 train: bool = False, hflip: bool = False, cache: bool = True, seed: int = 0,
                 pipeline=None, jitter: int = 0, disk_cache: str | os.PathLike | None = None,
                 extra_keys: Sequence[str] = (), excluded: Sequence[str] = (),
                 video_resize: str = "decord"):
        if not samples:
            raise DatasetError("the dataset split is empty: check the data root and the split column")
        from aqa.data.transforms import build_pipeline

        self.samples = samples
        self.num_frames = num_frames
        self.frame_size = frame_size
        self.train = train
        self.hflip = hflip and train
        self.cache = cache
        self.seed = seed
        self.pipeline = pipeline or build_pipeline("square", frame_size, hflip=hflip)
        self.jitter = jitter if train else 0
        self.extra_keys = tuple(extra_keys)
        self.excluded = list(excluded)
        self.video_resize = check_video_resize(video_resize)
        self._disk = None
        if disk_cache:
            from aqa.data.cache import ClipCache
            self._disk = ClipCache(disk_cache)
        self._cache: dict = {}
        self._draws = np.zeros(len(samples), dtype=np.int64)
        self._fingerprints: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def decoder(self) -> str:
        """What makes this dataset's frames: :func:`video_decoder` when it reads videos, else
        PIL (frame folders)."""
        if any(not s.is_frame_folder for s in self.samples):
            return video_decoder(self.pipeline, self.video_resize)
        return "PIL (frame images)"

    def _rng(self, i: int) -> np.random.Generator:
        """Train: a new seeded stream per draw of sample i; test: the same stream every time."""
        if not self.train:
            return np.random.default_rng([self.seed, i])
        self._draws[i] += 1
        # DataLoader workers get a fresh torch seed per epoch (drawn from the seeded main RNG)
        return np.random.default_rng([self.seed, i, int(self._draws[i]), torch.initial_seed() % 2**32])

    def needed_positions(self, i: int) -> list[int]:
        """Sorted span positions a clip of sample i may read (all shifts when jittering)."""
        s = self.samples[i]
        n = num_available(s)
        shifts = range(-self.jitter, self.jitter + 1) if s.window_start is not None else [0]
        return sorted({p for d in shifts for p in window_positions(s, self.num_frames, d, n)})

    def _fingerprint(self, i: int, positions: list[int]) -> str:
        from aqa.data.cache import file_fingerprint, files_fingerprint

        if i not in self._fingerprints:
            s = self.samples[i]
            self._fingerprints[i] = (files_fingerprint(frame_paths(s, positions))
                                     if s.is_frame_folder else file_fingerprint(Path(s.video)))
        return self._fingerprints[i]

    def frames(self, i: int, interpolation: str) -> tuple[list[int], np.ndarray]:
        """``(positions, frames (P, H, W, 3) uint8)`` of sample i, through the caches."""
        positions = self.needed_positions(i)
        size = self.pipeline.decode_size
        mem_key = (i, interpolation)
        if mem_key in self._cache:
            return positions, self._cache[mem_key]
        key = None
        arr = None
        if self._disk is not None:
            from aqa.data.cache import clip_key
            how = interpolation if self.video_resize == "decord" else f"{interpolation}|{self.video_resize}"
            if self.video_resize == "decord" and size is not None and \
                    not self.samples[i].is_frame_folder:
                from aqa.video import frames_decoder
                made_by = frames_decoder(size)
                if not made_by.startswith("decord"):  # PyAV's scaler: not decord's pixels
                    how += f"|{made_by}"  # (decord's entries keep the keys they always had)
            key = clip_key(self._fingerprint(i, positions), positions, size, how)
            # mapped, not read, unless kept in memory: a clip reads only its window and crop
            arr = self._disk.get(key, mmap=not self.cache)
        if arr is None:
            arr = decode(self.samples[i], positions, size, interpolation, self.video_resize)
            if self._disk is not None:
                self._disk.put(key, arr)
        if self.cache:
            self._cache[mem_key] = arr
        return positions, arr

    def _window_frames(self, i: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``(frames (P, H, W, 3), where)``: sample i's decoded frames (through the caches) and
        the rows of its clip's window (a random shift at train time), drawn from ``rng``."""
        interpolation = self.pipeline.draw_interpolation(rng, self.train)
        positions, arr = self.frames(i, interpolation)
        s = self.samples[i]
        shift = int(rng.integers(-self.jitter, self.jitter + 1)) if self.jitter else 0
        want = window_positions(s, self.num_frames, shift, num_available(s))
        return arr, np.searchsorted(positions, want)  # positions is sorted and holds every want

    def clip(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 for sample i at its window (a random shift at train time)."""
        arr, where = self._window_frames(i, rng or self._rng(i))
        return np.asarray(arr[where])

    def __getitem__(self, i: int) -> dict:
        """The item of ``_item(i, clip(i, rng), rng)``, the same draws and pixels, copying only
        the window and crop the clip keeps (``transforms.window_clip``)."""
        from aqa.data.transforms import window_clip

        rng = self._rng(i)
        arr, where = self._window_frames(i, rng)
        flip, top, left, h, w = self.pipeline.window(arr.shape[1], arr.shape[2], self.train, rng)
        return self._item_from_tensor(i, window_clip(arr, where, flip, top, left, h, w))

    def item_at(self, i: int, positions: Sequence[int], rng: np.random.Generator) -> dict:
        """Sample i's item with the clip read at ``positions`` (a method's own sampling, such as
        PECoP's segment-pace clips); decoded each time (no cache), then the same pipeline."""
        clip = load_clip(self.samples[i], positions, self.pipeline, self.video_resize,
                         self.train, rng)
        return self._item_from_tensor(i, clip)

    def _item(self, i: int, clip: np.ndarray, rng: np.random.Generator,
              flipped: bool | None = None) -> dict:
        frames = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2)  # (C,T,H,W)
        return self._item_from_tensor(i, self.pipeline.apply(frames, self.train, rng, flipped))

    def _item_from_tensor(self, i: int, frames: torch.Tensor) -> dict:
        s = self.samples[i]
        item = {"video": frames.contiguous(), "score": torch.tensor(s.score, dtype=torch.float32),
                "difficulty": torch.tensor(s.difficulty, dtype=torch.float32), "id": s.id}
        for k in self.extra_keys:
            item[k] = torch.as_tensor(np.asarray(s.meta[k], dtype=np.float32))
        return item


def collate(items: list[dict]) -> dict:
    """Stack tensors, keep lists of everything else (ids). Feature programs of different
    lengths (``features``, test items of ``aqa.data.features``) are zero-padded to the longest;
    their ``length`` says how many rows are real. Tensors are stacked by torch's
    ``default_collate``, which in a DataLoader worker stacks straight into shared memory (one
    copy fewer than a stack the queue then moves there)."""
    from torch.utils.data import default_collate

    out = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key == "features" and len({v.shape for v in values}) > 1:
            from aqa.data.features import pad_features
            out[key] = pad_features(values)
        else:
            out[key] = default_collate(values) if torch.is_tensor(values[0]) else values
    return out


def loader_kwargs(num_workers: int, device: str | torch.device = "cpu") -> dict:
    """DataLoader settings that keep the CPU cores busy: workers with prefetch, persistent
    between epochs, and pinned memory when batches go to CUDA."""
    device = torch.device(device) if isinstance(device, str) else device
    kw = {"num_workers": num_workers, "pin_memory": device.type == "cuda"}
    if num_workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=2)
    return kw


# ----------------------------------------------------------------- shared adapter plumbing

from aqa.config import DataConfig  # noqa: E402  (after the classes above, which need no config)


@dataclass
class FramesDataConfig(DataConfig):
    """Options shared by the adapters of distributed datasets (MTL-AQA, AQA-7, ...)."""

    cache: bool = False  # keep decoded clips in memory too (large: 103x256x455x3 bytes a clip)
    pipeline: str = "square"  # spatial preprocessing: square, tvv (CoRe/TPT), tvv_fixed, tvv_cv2 (PECoP), musdl
    jitter: int = 0  # train-time random shift of the window, -jitter..jitter frames
    disk_cache: str = ""  # folder of decoded clips reused across epochs; empty = <workspace>/cache/clips, off = none
    interpolation: str = ""  # resize filter at train and test: nearest, bilinear, bicubic, lanczos, random (MUSDL's test-time draw); empty = the pipeline's own


def resolve_common(cfg, workspace: Path, what: str, hint: str):
    """Absolute root (DatasetError with ``hint`` when unset or absent) and the disk cache folder."""
    from dataclasses import replace

    if not cfg.root:
        raise DatasetError(f"the {what} dataset needs --data-root: {hint}")
    root = Path(cfg.root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{what} data root {root} does not exist; pass --data-root with {hint}")
    disk = cfg.disk_cache
    if disk == "":
        disk = str(Path(workspace).resolve() / "cache" / "clips")
    elif disk != "off":
        disk = str(Path(disk).expanduser().resolve())
    return replace(cfg, root=str(root), disk_cache=disk)


def build_clip_dataset(cfg: FramesDataConfig, samples: list[Sample], split: str, train: bool,
                       seed: int, what: str, extra_keys: Sequence[str] = ()) -> ClipDataset:
    """The ClipDataset of an adapter: missing samples refused (or dropped with allow_missing)."""
    from aqa.data.transforms import build_pipeline

    kept, excluded = keep_present(samples, cfg.allow_missing, f"{what} {split}")
    disk = None if cfg.disk_cache in ("", "off") else cfg.disk_cache
    return ClipDataset(kept, cfg.num_frames, cfg.frame_size, train=train, hflip=cfg.hflip,
                       cache=cfg.cache, seed=seed, pipeline=build_pipeline(cfg.pipeline, cfg.frame_size, cfg.hflip,
                                                                      interpolation=cfg.interpolation,
                                                                      **resize_of(cfg)),
                       jitter=cfg.jitter, disk_cache=disk, extra_keys=extra_keys, excluded=excluded,
                       video_resize=cfg.video_resize)


def resize_of(data_cfg) -> dict:
    """``{"resize": (w, h)}`` for a data config with its own ``resize`` (FineDiving's
    ``Resize((200, 112))``), else nothing (the pipelines' 455x256): ``build_pipeline``'s kwargs."""
    resize = getattr(data_cfg, "resize", None)
    return {"resize": tuple(resize)} if resize else {}


def holdout_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (kept, held out): a seeded ``round(n * fraction)`` held out."""
    held = sorted(np.random.default_rng(seed).permutation(n)[:round(n * fraction)].tolist())
    gone = set(held)
    return [i for i in range(n) if i not in gone], held


class SampleSubset(Dataset):
    """The samples ``indices`` of a dataset, keeping what the loop and methods read from it."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, list(indices)
        self.samples = [dataset.samples[i] for i in self.indices]
        self.extra_keys = getattr(dataset, "extra_keys", ())
        self.excluded = getattr(dataset, "excluded", ())

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]
