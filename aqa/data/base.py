"""What every dataset adapter yields: samples, and a torch Dataset of clips over them.

A Sample knows its id, score, difficulty, split and where its frames live. ClipDataset decodes a
sample's clip with ``aqa.video`` and yields

    video:      (C, T, H, W) uint8
    score:      float32 scalar
    difficulty: float32 scalar (1.0 where the dataset has none)
    id:         str
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from aqa.errors import DatasetError


@dataclass(frozen=True)
class Sample:
    id: str
    video: Path  # a video file (frame folders come with the dataset issue)
    score: float
    difficulty: float = 1.0
    split: str = "train"


class ClipDataset(Dataset):
    """Decode ``num_frames`` uniformly sampled frames per sample, resized in the decoder."""

    def __init__(self, samples: list[Sample], num_frames: int, frame_size: int,
                 train: bool = False, hflip: bool = False, cache: bool = True, seed: int = 0):
        if not samples:
            raise DatasetError("the dataset split is empty: check the data root and the split column")
        self.samples = samples
        self.num_frames = num_frames
        self.frame_size = frame_size
        self.train = train
        self.hflip = hflip and train
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def clip(self, i: int) -> np.ndarray:
        """(T, H, W, 3) uint8 for sample i, decoded once when caching."""
        from aqa import video

        if i in self._cache:
            return self._cache[i]
        frames = video.read_clip(self.samples[i].video, self.num_frames,
                                 size=(self.frame_size, self.frame_size))
        if self.cache:
            self._cache[i] = frames
        return frames

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        frames = torch.from_numpy(self.clip(i)).permute(3, 0, 1, 2)  # (T,H,W,C) -> (C,T,H,W)
        if self.hflip and self._rng.random() < 0.5:
            frames = frames.flip(-1)
        return {"video": frames.contiguous(), "score": torch.tensor(s.score, dtype=torch.float32),
                "difficulty": torch.tensor(s.difficulty, dtype=torch.float32), "id": s.id}
