"""Scorer: a checkpoint -> ``score(video)`` -> ScoreResult.

The checkpoint carries the resolved config, so no dataset needs to be on disk. A clip is read
with the frame count and size the model was trained with: a clip of exactly that many frames
(after the optional ``start``/``end`` trim) is used frame for frame, any other length is
resampled uniformly (repeating frames when shorter), and the result says so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aqa.allocator import reuse_freed_memory
from aqa.config import build_run_config
from aqa.errors import CheckpointError, VideoError
from aqa.registry import METHODS
from aqa.train.checkpoint import load_checkpoint

MIN_SOURCE_FRAMES = 4  # fewer frames than this is not a performance that can be scored
STAGES = ("decode", "model", "result")  # what ``score(stage=...)`` reports, in order
PROGRAM_STAGES = ("features", "model", "result")  # the same for a whole program (GDLT, CoFInAl)


def frame_range(num_frames: int, fps: float, start_s: float | None,
                end_s: float | None) -> tuple[int, int]:
    """``[start_s, end_s)`` seconds of a clip of ``num_frames`` at ``fps`` -> (first frame, frame
    to stop before): the frames whose timestamps ``i / fps`` lie in the range. None = the clip's
    start / end. A range outside the clip is refused with its duration, not clipped."""
    duration = num_frames / fps if fps else 0.0
    if not fps:
        raise VideoError("the clip does not say its frame rate, so a range in seconds cannot be "
                         "turned into frames; give --start/--end in frames instead")
    lo = 0.0 if start_s is None else float(start_s)
    hi = duration if end_s is None else float(end_s)
    if lo < 0 or (hi <= lo < duration):
        raise VideoError(f"the range {lo:g}–{hi:g} s is empty or negative: the start must be "
                         f"0 or more and before the end")
    if lo >= duration or hi > duration + 0.5 / fps:
        raise VideoError(f"the range {lo:g}–{hi:g} s is outside the clip, which lasts "
                         f"{duration:.2f} s ({num_frames} frames at {fps:g} fps)")
    return int(np.ceil(lo * fps - 1e-6)), min(num_frames, int(np.ceil(hi * fps - 1e-6)))


def _report(stage, name: str, stages: tuple[str, ...]) -> None:
    if stage is not None:
        stage(name, stages.index(name), len(stages))


@dataclass
class ScoreResult:
    score: float  # the predicted score, unrounded
    method: str
    checkpoint: str
    source_frames: int  # frames in the (trimmed) clip
    frames_used: int  # frames the model saw
    resampled: bool  # True when source_frames != frames_used
    frame_indices: list[int]  # which source frames were used, in order
    timings: dict[str, float]  # seconds per stage: load, decode, model
    difficulty: float | None = None
    exemplars: list[dict] = field(default_factory=list)  # pair methods: id, score, difference
    distribution: list[float] | None = None  # distribution methods: probability per score bin
    spread: float | None = None  # standard deviation over voters, where there are voters
    notes: list[str] = field(default_factory=list)
    transitions: dict | None = None  # step methods (fdtsa): positions, source frames, seconds
    protocol: str | None = None  # how the exemplars were chosen (dive_number, difficulty)
    dive_number: str | None = None  # the dive number given, if any
    frames: np.ndarray | None = field(default=None, repr=False)  # (T, H, W, 3) uint8 as decoded
    decoder: str = ""  # what decoded and resized the frames (aqa.data.base.video_decoder)
    contributions: dict | None = None  # feature methods (GDLT, CoFInAl): per-grade and per-clip parts of the score, "clip_seconds" the clips' times
    target: str | None = None  # the score the checkpoint predicts where the dataset has several (rg: total, fisv: tes/pcs)
    scored_range: dict | None = None  # the part of the clip scored: start/end frame (end excluded), start_s/end_s, fps
    voters: list[float] | None = None  # pair methods: each voter's predicted score (spread = their std)
    nearest: list[dict] = field(default_factory=list)  # pair methods: the bank's clips nearest in feature space

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("frames")
        return d


def weights_from_checkpoint(cfg, model_state: dict):
    """``cfg`` for building a model whose every weight the checkpoint holds: no pretrained
    backbone weights are read (the Kinetics file, the run a PECoP backbone came from: neither need
    exist where a checkpoint is scored), and the architecture options those weights used to
    switch on are taken from the checkpoint's keys instead (PECoP's adapters)."""
    from dataclasses import replace

    from aqa.models.adapters import has_adapters

    backbone = cfg.backbone
    if getattr(backbone, "weights", ""):
        backbone = replace(backbone, weights="")
    if hasattr(backbone, "adapters") and not backbone.adapters and has_adapters(model_state):
        backbone = replace(backbone, adapters=True)
    return replace(cfg, backbone=backbone)


class Scorer:
    """Holds one model in eval mode; ``score`` may be called many times."""

    def __init__(self, method, model: torch.nn.Module, checkpoint: Path, device: torch.device,
                 load_s: float, state: dict | None = None):
        self.method, self.model, self.checkpoint = method, model, checkpoint
        self.state = {k: v for k, v in (state or {}).items()
                      if k not in ("model", "optimizer", "scheduler", "scaler", "rng")}
        self.device, self.load_s = device, load_s
        self.cfg = method.cfg

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> "Scorer":
        t0 = time.perf_counter()
        path = Path(path)
        state = load_checkpoint(path, map_location=device)
        try:
            cfg = build_run_config(state["method"], state["config"]["dataset"],
                                   values=state["config"])
        except KeyError as exc:
            raise CheckpointError(f"{path} has no {exc} entry; it was not written by this "
                                  "project's training loop") from None
        cfg = weights_from_checkpoint(cfg, state["model"])
        method = METHODS.get(cfg.method)(cfg)
        model = method.build_model()
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not fit the {cfg.method} model: "
                                  f"{str(exc)[:300]}") from exc
        model.to(device).eval()
        return cls(method, model, path, torch.device(device), time.perf_counter() - t0, state)

    def pipeline(self):
        """The spatial preprocessing the model was trained with (the dataset's ``data.pipeline``:
        e.g. MUSDL/TSA's 455x256 resize and centre crop; ``square`` for datasets without one),
        applied at test time: no flip, centre crop."""
        from aqa.data.base import resize_of
        from aqa.data.transforms import build_pipeline

        d = self.cfg.data
        return build_pipeline(getattr(d, "pipeline", "square"), d.frame_size, hflip=False,
                              interpolation=getattr(d, "interpolation", ""), **resize_of(d))

    def _indices(self, num_frames: int, start: int | None, end: int | None) -> tuple[list[int], int]:
        from aqa.video import sample_indices

        lo = 0 if start is None else max(0, start)
        hi = num_frames if end is None else min(num_frames, end)
        if hi - lo < MIN_SOURCE_FRAMES:
            raise VideoError(f"the clip has {max(0, hi - lo)} frame(s) in the chosen range; at "
                             f"least {MIN_SOURCE_FRAMES} are needed to score a performance")
        wanted = self.cfg.data.num_frames
        return [lo + i for i in sample_indices(hi - lo, wanted)], hi - lo

    def _batch(self, video: str | Path, difficulty: float | None, start: int | None = None,
               end: int | None = None, dive_number: str | None = None
               ) -> tuple[dict, Any, list[int], int]:
        """A batch of one clip as the model was trained on it: (batch, frames (T, H, W, 3)
        uint8, the source frame indices used, the frame count of the trimmed clip)."""
        from aqa import video as V

        from aqa.data.base import Sample, load_clip

        indices, source = self._indices(V.probe(video).num_frames, start, end)  # probed once
        clip = load_clip(Sample(id=Path(video).stem, video=Path(video), score=0.0), indices,
                         self.pipeline(), getattr(self.cfg.data, "video_resize", "decord"),
                         train=False, rng=np.random.default_rng(0))  # (C, T, H, W) uint8
        frames = clip.permute(1, 2, 3, 0).numpy()  # a view, for the result (T, H, W, 3)
        clip = clip.unsqueeze(0).to(self.device)
        batch = {"video": clip,  # (1, C, T, H, W) uint8
                 "difficulty": torch.tensor([difficulty or 1.0], device=self.device),
                 "difficulty_given": difficulty,
                 "score": torch.zeros(1, device=self.device), "id": [Path(video).stem]}
        if dive_number:
            batch["dive_number"] = str(dive_number)
        return batch, frames, indices, source

    @torch.no_grad()
    @reuse_freed_memory()
    def compare(self, video_a: str | Path, video_b: str | Path, difficulty_a: float | None = None,
                difficulty_b: float | None = None) -> dict[str, Any]:
        """Head to head (pair methods): which clip is better, and by how much.

        Returns ``score_a``, ``score_b`` (each scored against the exemplar bank), ``difference``
        (B minus A, predicted by the pair head from both orders of the two clips), ``better``
        ("A", "B" or "tie") and ``summary``, a sentence.
        """
        batch_a = self._batch(video_a, difficulty_a)[0]
        batch_b = self._batch(video_b, difficulty_b)[0]
        out = self.method.compare_clips(self.model, batch_a, batch_b, self.state)
        diff = out["difference"]
        better = "tie" if abs(diff) < 1e-6 else ("B" if diff > 0 else "A")
        out["better"] = better
        out["summary"] = ("the two dives are level" if better == "tie" else
                          f"{better} is better by {abs(diff):.2f} points "
                          f"(A {out['score_a']:.2f}, B {out['score_b']:.2f})")
        return out

    @torch.no_grad()
    @reuse_freed_memory()
    def score(self, video: str | Path, difficulty: float | None = None,
              start: int | None = None, end: int | None = None,
              tube: str | None = None, progress=None,
              dive_number: str | None = None, start_s: float | None = None,
              end_s: float | None = None, stage=None) -> ScoreResult:
        """``tube``: TSA's athlete tube (auto, motion, full); None keeps the checkpoint's.
        ``dive_number``: FineDiving TSA's exemplars of that dive number (the official protocol).
        ``start``/``end`` (frames, end excluded) or ``start_s``/``end_s`` (seconds) trim the clip
        before anything is decoded: only the frames of that range are read (by index, nothing is
        re-encoded), and ``scored_range`` says which. ``stage(name, index, count)`` is called as
        each of :data:`STAGES` begins (:data:`PROGRAM_STAGES` for a program).
        A feature method (GDLT, CoFInAl) scores the whole program: its clip features are
        extracted with the checkpoint's recipe first (``progress(done, total)`` per batch of
        clips), see :meth:`score_program`."""
        if start_s is not None or end_s is not None:
            if start is not None or end is not None:
                from aqa.errors import ConfigError
                raise ConfigError("give the range in frames (start/end) or in seconds "
                                  "(start_s/end_s), not both")
            from aqa import video as V

            info = V.probe(video)
            start, end = frame_range(info.num_frames, info.fps, start_s, end_s)
        if getattr(self.method, "inputs", "video") == "features":
            if start is not None or end is not None:
                from aqa.errors import ConfigError
                raise ConfigError(f"{self.cfg.method} scores a whole program: --start/--end "
                                  "trimming is not supported; cut the video first")
            _report(stage, "features", PROGRAM_STAGES)
            result = self.score_program(video, progress)
            _report(stage, "result", PROGRAM_STAGES)
            if difficulty is not None:
                result.notes.append(f"the difficulty given ({difficulty:g}) is not used: "
                                    f"{self.cfg.method} scores the program from its features alone")
            return result

        from aqa.data.base import decoder_note, video_decoder
        t0 = time.perf_counter()
        _report(stage, "decode", STAGES)
        batch, frames, indices, source = self._batch(video, difficulty, start, end, dive_number)
        if tube:
            batch["tube"] = tube
        t1 = time.perf_counter()
        _report(stage, "model", STAGES)
        out = self.method.score_clip(self.model, batch, self.state)
        t2 = time.perf_counter()
        _report(stage, "result", STAGES)
        decoder = video_decoder(self.pipeline(), getattr(self.cfg.data, "video_resize", "decord"))
        notes = []
        if source != len(indices):
            notes.append(f"the clip has {source} frames; resampled uniformly to the model's "
                         f"{len(indices)}")
        note = decoder_note(decoder, self.cfg.data)
        if note:
            notes.append(note)
        transitions = None
        if out.get("transits") is not None:  # positions in the frames the model saw
            from aqa import video as V

            fps = V.probe(video).fps
            pos = [int(p) for p in out["transits"]]
            src = [indices[min(p, len(indices) - 1)] for p in pos]
            transitions = {"positions": pos, "frames": src, "frames_seen": len(indices),
                           "seconds": [round(f / fps, 3) for f in src] if fps else None}
        return ScoreResult(score=float(out["score"]), method=self.cfg.method,
                           transitions=transitions, protocol=out.get("protocol"),
                           dive_number=str(dive_number) if dive_number else None,
                           checkpoint=str(self.checkpoint), source_frames=source,
                           frames_used=len(indices), resampled=source != len(indices),
                           frame_indices=indices, difficulty=difficulty,
                           timings={"load": self.load_s, "decode": t1 - t0, "model": t2 - t1},
                           exemplars=out.get("exemplars", []),
                           distribution=out.get("distribution"), spread=out.get("spread"),
                           notes=notes + out.get("notes", []), frames=frames,
                           decoder=decoder, voters=out.get("voters"),
                           nearest=out.get("nearest", []),
                           scored_range=self.scored_range(video, start, source))

    @staticmethod
    def scored_range(video: str | Path, start: int | None, source: int) -> dict:
        """The trimmed part of ``video`` that was scored: frames [start_frame, end_frame) and
        the same in seconds."""
        from aqa import video as V

        fps = V.probe(video).fps  # learned once per file version: no second open
        lo = max(0, start or 0)
        seconds = (lambda f: round(f / fps, 3)) if fps else (lambda f: None)  # noqa: E731
        return {"start_frame": lo, "end_frame": lo + source, "start_s": seconds(lo),
                "end_s": seconds(lo + source), "fps": fps}

    # ------------------------------------------------------------------ long programs
    def feature_recipe(self) -> dict:
        """The recipe of the features the model was trained on (``recipe.json`` of its feature
        folder, saved in ``best.pt``; else read from the folder if it is still there)."""
        from aqa.data.features import recipe_of

        record = self.state.get("feature_recipe")
        d = self.cfg.data
        if record is None and getattr(d, "features", "") and d.root:
            folder = Path(d.root) / Path(d.features).expanduser()
            record = recipe_of(folder) if folder.is_dir() else None
        if record is None:
            raise CheckpointError(
                f"{self.checkpoint} was trained on features without a recipe.json (an official "
                "release such as GDLT's Video Swin features, or an imported checkpoint): how to "
                "make its features from a video is not known, so an upload cannot be scored. "
                "Train on features made by `python -m aqa features extract` (they record their "
                "recipe), or score feature files with `python -m aqa eval`")
        return record

    def score_program(self, video: str | Path, progress=None) -> ScoreResult:
        """A whole program: features with the checkpoint's recipe, then the method's score and
        its per-grade / per-clip contributions over the program's timeline."""
        from aqa import video as V
        from aqa.features.extract import (check_identity, clip_starts, extract_video, frame_plan,
                                          load_backbone, recipe_from_record)

        record = self.feature_recipe()
        recipe = recipe_from_record(record).resolved()
        t0 = time.perf_counter()
        encoder, identity = load_backbone(recipe, self.device)
        check_identity(record, identity)  # the weights are still those the features were made with
        info = V.probe(video)
        t1 = time.perf_counter()
        feats = extract_video(video, recipe, self.device, progress, encoder=encoder)
        t2 = time.perf_counter()
        x = torch.from_numpy(feats)[None].to(self.device)  # (1, T, D)
        batch = {"features": x, "length": torch.tensor([x.shape[1]], device=self.device),
                 "score": torch.zeros(1, device=self.device), "id": [Path(video).stem]}
        out = self.method.score_clip(self.model, batch, self.state)
        t3 = time.perf_counter()
        plan = frame_plan(info.num_frames, info.fps, recipe.fps)
        starts = clip_starts(len(plan), recipe.clip_len, recipe.stride)
        fps = info.fps or 25.0
        centres = [float(plan[min(s + recipe.clip_len // 2, len(plan) - 1)]) / fps for s in starts]
        contributions = dict(out.get("contributions") or {}, clip_seconds=centres)
        used = sorted({int(plan[min(s + k, len(plan) - 1)]) for s in starts
                       for k in range(recipe.clip_len)})
        notes = [f"{len(starts)} clips of {recipe.clip_len} frames every {recipe.stride} "
                 f"({recipe.backbone} features, {feats.shape[1]}-d)"] + out.get("notes", [])
        return ScoreResult(score=float(out["score"]), method=self.cfg.method,
                           checkpoint=str(self.checkpoint), source_frames=info.num_frames,
                           frames_used=len(used), resampled=len(plan) != info.num_frames,
                           frame_indices=used, notes=notes, contributions=contributions,
                           timings={"load": self.load_s, "backbone": t1 - t0,
                                    "features": t2 - t1, "model": t3 - t2},
                           target=getattr(self.cfg.data, "target", None))

