"""Synthetic dives: a tiny built-in dataset whose scores are a known function of the pixels.

Each clip shows a figure (a capsule "body" with a head dot) standing on a board at the top
left, jumping, somersaulting along a parabola, lining up straight for the entry and entering
the water (the dark-blue band at the bottom) with a white splash that grows in the last frames.
Everything that sets the score is drawn:

=================  ============================  ============================================
quantity           drawn from                    what you see
=================  ============================  ============================================
``splash``         uniform 2 .. 14 px            splash radius in the last frame (at size 64;
                                                 drawn scaled by ``size / 64``): white dome
                                                 and foam on the dark-blue water
``entry_angle``    uniform 0 .. 40 degrees       tilt of the straight body from head-down
                                                 vertical in the frames before entry
``rotation``       uniform 0.8 .. 1.0            fraction of the intended somersaults turned
                                                 while tucked
``difficulty``     1.6, 2.0, 2.4, 2.8, 3.2, 3.6  ``somersaults = 1.25 * difficulty - 1`` (1 to
                   with weights 2, 5, 13, 30,    3.5 turns: rotation speed) and a higher jump
                   35, 15 % (like MTL-AQA)
=================  ============================  ============================================

The score (see :func:`score_of`) is::

    quality = clip(10 - 0.6 * (splash - 2) - 0.05 * entry_angle - 5 * (1 - rotation), 0, 10)
    score   = 3 * quality * difficulty          # 0 .. 108, like MTL-AQA's 0 .. ~105

so the splash explains most of the score variance (a tiny 3D CNN learns it in minutes on a CPU),
then the difficulty, the entry angle and the rotation. The hidden quantities are rounded
before drawing, and the CSV's score is exactly ``round(score_of(...), 2)`` of its columns. Clip ``i`` depends only on ``(seed, i)`` and
the drawing arguments, so renders are reproducible (H.264 is encoded single-threaded).

Layout written by :func:`render_dataset`::

    root/synthetic.json     the arguments (existing clips are trusted only when they match)
    root/clips/dive_0000.mp4 ...
    root/scores.csv         video,score,difficulty,split,entry_angle,splash,rotation (written last)
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from aqa.errors import DatasetError

DIFFICULTIES = (1.6, 2.0, 2.4, 2.8, 3.2, 3.6)
DIFFICULTY_WEIGHTS = (0.02, 0.05, 0.13, 0.30, 0.35, 0.15)  # like MTL-AQA: mostly harder dives
CSV_COLUMNS = ("video", "score", "difficulty", "split", "entry_angle", "splash", "rotation")
RENDER_VERSION = 1  # bump when the drawing changes, so old folders are re-rendered

_REF = 64.0  # geometry below is in pixels of a 64 x 64 frame, scaled by size / 64
_T_JUMP, _T_ENTRY = 0.10, 0.70  # normalised times: leave the board, touch the water
_TUCK_END = 0.70  # fraction of the flight spent tucked and rotating; the rest is lined up


class Dive(NamedTuple):
    """The hidden quantities of one clip plus the per-clip jitter of the scene."""

    entry_angle: float  # degrees from head-down vertical at entry
    splash: float  # splash radius in px at size 64
    rotation: float  # fraction of the intended somersaults completed
    difficulty: float  # one of DIFFICULTIES
    entry_x: float  # where the figure enters the water (px at size 64)
    board_y: float  # board top (px at size 64)
    water_y: float  # water surface (px at size 64)
    sky: tuple[float, float, float]  # RGB of the sky at the top
    suit: tuple[float, float, float]  # RGB of the body


def score_of(entry_angle: float, splash: float, rotation: float, difficulty: float) -> float:
    """The judges' score of a synthetic dive (see the module docstring for the ranges).

    ``quality = clip(10 - 0.6 (splash - 2) - 0.05 entry_angle - 5 (1 - rotation), 0, 10)``
    and ``score = 3 * quality * difficulty``.
    """
    quality = 10.0 - 0.6 * (splash - 2.0) - 0.05 * entry_angle - 5.0 * (1.0 - rotation)
    return 3.0 * min(max(quality, 0.0), 10.0) * difficulty


def somersaults(difficulty: float) -> float:
    """Turns the figure intends to make: 1.6 -> 1, 2.0 -> 1.5, ..., 3.6 -> 3.5."""
    return 1.25 * difficulty - 1.0


def draw_dive(seed: int, index: int) -> Dive:
    """The quantities of clip ``index`` of the dataset with ``seed`` (rounded as in the CSV)."""
    rng = np.random.default_rng([seed, index])
    return Dive(
        entry_angle=round(float(rng.uniform(0.0, 40.0)), 1),
        splash=round(float(rng.uniform(2.0, 14.0)), 2),
        rotation=round(float(rng.uniform(0.8, 1.0)), 3),
        difficulty=float(rng.choice(DIFFICULTIES, p=DIFFICULTY_WEIGHTS)),
        entry_x=float(rng.uniform(32.0, 40.0)),
        board_y=float(rng.uniform(19.0, 23.0)),
        water_y=float(rng.uniform(49.0, 51.0)),
        sky=tuple(float(v) for v in np.array([110.0, 160.0, 220.0]) + rng.uniform(-12, 12, 3)),
        suit=((225.0, 50.0, 40.0), (240.0, 140.0, 20.0), (200.0, 40.0, 160.0))[rng.integers(3)],
    )


def render_clip(dive: Dive, num_frames: int = 24, size: int = 64) -> np.ndarray:
    """The frames of one dive, uint8 RGB of shape ``(num_frames, size, size, 3)``."""
    scale = size / _REF
    grid = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / scale  # (2, S, S), ref px
    background = _background(dive, grid)  # (S, S, 3)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        frame = background.copy()
        _draw_figure(frame, grid, dive, t, scale)
        _draw_water(frame, grid, dive)
        if t > _T_ENTRY:
            _draw_splash(frame, grid, dive, (t - _T_ENTRY) / (1.0 - _T_ENTRY), scale)
        frames[i] = np.clip(frame + 0.5, 0, 255).astype(np.uint8)
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    """Encode ``frames`` ``(T, H, W, 3)`` uint8 RGB as H.264 (yuv420p, crf 18) at ``path``.

    Written to a temporary name in the same folder and renamed, so a crash never leaves a
    half file under the final name; single-threaded so the bytes are reproducible.
    """
    import av

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18", "threads": "1"}
            stream.codec_context.thread_count = 1
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts = i
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def render_dataset(
    root: str | os.PathLike,
    num_clips: int = 240,
    seed: int = 0,
    num_frames: int = 24,
    size: int = 64,
    fps: int = 12,
    test_fraction: float = 0.25,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render the synthetic dives dataset under ``root`` and return ``root`` as a Path.

    Resumable: clips already rendered with the same arguments are kept, so a second call
    renders nothing. A folder rendered with other arguments is cleared and re-rendered; a
    non-empty folder that is not a synthetic dataset is refused (DatasetError).
    ``progress(done, total)`` is called after each clip.
    """
    _check_args(num_clips, num_frames, size, fps, test_fraction)
    root = Path(root)
    params = dict(version=RENDER_VERSION, num_clips=num_clips, seed=seed,
                  num_frames=num_frames, size=size, fps=fps, test_fraction=test_fraction)
    _claim_root(root, params)
    clips = root / "clips"
    clips.mkdir(exist_ok=True)
    test = _test_indices(seed, num_clips, test_fraction)
    rows = []
    for i in range(num_clips):
        dive = draw_dive(seed, i)
        video = f"clips/dive_{i:04d}.mp4"
        if not (root / video).exists():
            write_mp4(root / video, render_clip(dive, num_frames, size), fps)
        rows.append(_row(video, dive, "test" if i in test else "train"))
        if progress is not None:
            progress(i + 1, num_clips)
    _write_csv_atomic(root / "scores.csv", rows)
    return root


def _check_args(num_clips: int, num_frames: int, size: int, fps: int, test_fraction: float) -> None:
    """ValueError for arguments that cannot make a dataset (H.264 4:2:0 needs an even size)."""
    if num_clips < 1 or num_frames < 2 or fps < 1:
        raise ValueError(f"need num_clips >= 1, num_frames >= 2, fps >= 1; got "
                         f"{num_clips}, {num_frames}, {fps}")
    if size < 32 or size % 2 or size in (48, 72):
        raise ValueError(f"size must be an even number of pixels >= 32 other than 48 and 72 "
                         f"(widths decord 0.6 cannot read back), got {size}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")


def _claim_root(root: Path, params: dict) -> None:
    """Make ``root`` a synthetic dataset with ``params``, clearing one made with other params."""
    marker = root / "synthetic.json"
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == params:
                return
        except (OSError, ValueError):
            pass
        (root / "scores.csv").unlink(missing_ok=True)  # first: the folder no longer looks done
        marker.unlink()
        for old in (root / "clips").glob("dive_*.mp4"):
            old.unlink()
    elif root.exists() and not root.is_dir():
        raise DatasetError(f"{root}: is a file, not a folder; give a folder to render into.")
    elif root.exists() and any(root.iterdir()):
        raise DatasetError(
            f"{root}: the folder is not empty and holds no synthetic.json, so it is not a synthetic "
            f"dataset; render into an empty or new folder."
        )
    root.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(marker, json.dumps(params, indent=2) + "\n")


def _test_indices(seed: int, num_clips: int, test_fraction: float) -> set[int]:
    """The clips of the test split: ``round(test_fraction * num_clips)`` of them, by seed."""
    num_test = round(test_fraction * num_clips)
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(num_clips)
    return set(order[:num_test].tolist())


def _row(video: str, dive: Dive, split: str) -> dict:
    """One CSV row: the score and the hidden quantities it was computed from."""
    score = score_of(dive.entry_angle, dive.splash, dive.rotation, dive.difficulty)
    return dict(video=video, score=f"{score:.2f}", difficulty=dive.difficulty, split=split,
                entry_angle=dive.entry_angle, splash=dive.splash, rotation=dive.rotation)


def _write_csv_atomic(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` with the CSV_COLUMNS header to a temp file, then rename onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temp file next to ``path``, then rename it onto ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- drawing: pure numpy on a float (S, S, 3) canvas; geometry in 64-px reference units ---

def _background(dive: Dive, grid: np.ndarray) -> np.ndarray:
    """Sky gradient, a diving board at the top left and its stand, shape ``(S, S, 3)``."""
    y, x = grid  # (S, S) each
    sky_top, horizon = np.array([225.0, 235.0, 250.0]), np.array(dive.sky)
    mix = np.clip(y / _REF, 0, 1)[..., None]  # (S, S, 1)
    canvas = (1 - mix) * sky_top + mix * horizon  # (S, S, 3)
    board = (x < 16.0) & (y >= dive.board_y) & (y < dive.board_y + 2.5)
    stand = (x >= 3.0) & (x < 6.5) & (y >= dive.board_y + 2.5)
    canvas[stand] = (90.0, 90.0, 100.0)
    canvas[board] = (235.0, 225.0, 190.0)
    return canvas


def _draw_water(canvas: np.ndarray, grid: np.ndarray, dive: Dive) -> None:
    """The dark-blue water band below ``dive.water_y`` (drawn over the figure: it hides it)."""
    y, _ = grid
    depth = y - dive.water_y
    water = np.clip(depth + 0.5, 0, 1)[..., None]  # (S, S, 1) antialiased surface
    colour = np.array([20.0, 45.0, 115.0]) - np.clip(depth, 0, None)[..., None] * 0.8
    canvas[:] = (1 - water) * canvas + water * colour


def _draw_figure(canvas: np.ndarray, grid: np.ndarray, dive: Dive, t: float, scale: float) -> None:
    """The body (a capsule) and head (a disc) at normalised time ``t`` in [0, 1]."""
    cx, cy, angle, length = _pose(dive, t)
    ux, uy = math.sin(angle), -math.cos(angle)  # unit vector feet -> head (angle 0 = upright)
    half = length / 2
    feet, head = (cx - ux * half, cy - uy * half), (cx + ux * half, cy + uy * half)
    _paint(canvas, _capsule_alpha(grid, feet, head, 1.7, scale), dive.suit)
    head_centre = (head[0] + ux * 1.8, head[1] + uy * 1.8)
    _paint(canvas, _disc_alpha(grid, head_centre, 2.3, scale), (250.0, 215.0, 175.0))


def _pose(dive: Dive, t: float) -> tuple[float, float, float, float]:
    """Body centre x, y, angle (radians, clockwise from upright) and length at time ``t``."""
    start_x, start_y = 13.0, dive.board_y - 7.0
    if t < _T_JUMP:
        return start_x, start_y, 0.0, 12.0
    s = (t - _T_JUMP) / (_T_ENTRY - _T_JUMP)  # flight progress, > 1 once under water
    turns = somersaults(dive.difficulty)
    apex = 4.0 + 5.0 * turns  # harder dives jump higher
    cx = start_x + (dive.entry_x - start_x) * min(s, 1.0)
    cy = start_y + (dive.water_y - start_y) * s - 4.0 * apex * s * (1.0 - s) * (s < 1.0)
    if s < _TUCK_END:
        return cx, cy, 2 * math.pi * turns * dive.rotation * s / _TUCK_END, 7.0
    return cx, cy, math.pi - math.radians(dive.entry_angle), 14.0


def _draw_splash(canvas: np.ndarray, grid: np.ndarray, dive: Dive, u: float, scale: float) -> None:
    """A white dome and foam at the entry point; radius grows to ``dive.splash`` as ``u`` -> 1."""
    radius = dive.splash * (0.35 + 0.65 * u)
    centre = (dive.entry_x, dive.water_y)
    dome = _ellipse_alpha(grid, centre, 1.1 * radius, 0.8 * radius, scale)
    foam = _ellipse_alpha(grid, (centre[0], centre[1] + 1.5), 1.6 * radius, 0.6 * radius + 1, scale)
    _paint(canvas, np.maximum(dome, foam), (245.0, 250.0, 255.0))


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour: tuple[float, float, float]) -> None:
    """Blend ``colour`` into ``canvas`` (S, S, 3) with coverage ``alpha`` (S, S) in [0, 1]."""
    a = alpha[..., None]
    canvas[:] = (1 - a) * canvas + a * np.asarray(colour)


def _coverage(distance_px: np.ndarray) -> np.ndarray:
    """Antialiased coverage from a signed distance in output pixels (negative inside)."""
    return np.clip(0.5 - distance_px, 0.0, 1.0)


def _disc_alpha(grid: np.ndarray, centre: tuple[float, float], r: float, scale: float) -> np.ndarray:
    y, x = grid
    return _coverage((np.hypot(x - centre[0], y - centre[1]) - r) * scale)


def _capsule_alpha(grid: np.ndarray, a: tuple[float, float], b: tuple[float, float],
                   r: float, scale: float) -> np.ndarray:
    """Coverage of the segment ``a``-``b`` thickened to radius ``r`` (all in reference px)."""
    y, x = grid
    dx, dy = b[0] - a[0], b[1] - a[1]
    h = np.clip(((x - a[0]) * dx + (y - a[1]) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    return _coverage((np.hypot(x - a[0] - h * dx, y - a[1] - h * dy) - r) * scale)


def _ellipse_alpha(grid: np.ndarray, centre: tuple[float, float], rx: float, ry: float,
                   scale: float) -> np.ndarray:
    """Coverage of an axis-aligned ellipse (distance approximated along the short axis)."""
    y, x = grid
    norm = np.hypot((x - centre[0]) / rx, (y - centre[1]) / ry)
    return _coverage((norm - 1.0) * min(rx, ry) * scale)
