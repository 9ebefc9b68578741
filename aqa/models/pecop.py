"""PECoP: parameter-efficient continual pretraining (Dadashzadeh et al., WACV 2024), the VSPP
pretext task (docs/methods.md, PECoP; Plrbear/PECoP train.py, datasets/ucf101.py, models/i3d_adapter.py).

A frozen Kinetics I3D (hassony2) gets a 3D adapter after every Mixed block
(``aqa.models.adapters``); only the adapters and two heads train, on *video segment pace
prediction*: a 32-frame clip is read at the default rate ``fr`` except one of 4 segments, read at
a rate r in 1..5 other than fr (``aqa.data.sampling.draw_vspp``); the model predicts the pace
(r - 1, 5-way) and the segment (s - 1, 4-way):

    video (B, 3, 32, 224, 224) -> I3D + adapters -> Mixed_5c (B, 1024, 4, 7, 7)
      -> AvgPool3d((2, 7, 7), stride 1) (B, 1024, 3, 1, 1)
      -> dropout 0.5 -> logits_p 1x1x1 conv (B, 5, 3, 1, 1) -> mean over time (B, 5)
      -> dropout 0.5 -> logits_s 1x1x1 conv (B, 4, 3, 1, 1) -> mean over time (B, 4)
    loss = CE(pace) + CE(segment)

The adapted backbone is what a downstream method fine-tunes: ``backbone.weights=<run id>`` (see
``aqa.models.i3d.read_i3d_state``; ``python -m aqa export-backbone`` writes it as a file). An
official ``gait_adapterNN.pth.tar`` (or a pecop run) as ``backbone.weights`` of a pecop run also
gives the two heads their trained values, so the pretext continues where it stopped.

Data: frames are read at PECoP's positions (``aqa.data.sampling.draw_vspp``) and go through the
``tvv_cv2`` pipeline (set by default here): torch_videovision's numpy path that PECoP's cv2 frames
take, a 256 wide x 455 tall resize by cv2's nearest-neighbour rule, flip, random crop 224.

Evaluation reports ``pace_acc``, ``segment_acc`` and ``accuracy`` (= pace accuracy, which picks
best.pt). So that the loop's (id, true, predicted) rows carry both labels, a sample's "score" is
the class ``pace * max_segment + segment`` and the prediction is that class of the two argmaxes.

Official quirks behind flags (defaults are the correct behaviour): ``model.bgr`` feeds the
channels in BGR order (the official frames come from cv2 and are never converted to RGB);
``model.update_frozen_bn`` lets the frozen I3D's BatchNorm statistics keep updating (the
official model stays in train mode); ``model.official_steps`` keeps ``loop_load_rgb``'s step
and wrap quirks. The official script hard-codes SGD lr 0.01 whatever ``--lr`` says (its eta_min
is ``--lr``/1000); here ``optim.lr`` is used and the floor is ``optim.min_lr_factor * lr``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from aqa.config import RunConfig
from aqa.errors import ConfigError
from aqa.models.adapters import HEADS, adapter_parameters, is_adapter_key
from aqa.models.base import Method, count_parameters, set_bn_eval
from aqa.registry import BACKBONES, METHODS

log = logging.getLogger(__name__)  # under "aqa" (aqa.log)


@dataclass
class PECoPConfig:
    max_sr: int = 5  # playback rates 1..max_sr: the pace classes
    max_segment: int = 4  # segments of a clip: the segment classes
    fr: int = 0  # default sampling rate outside the segment (0 = auto: 3 for PD4T gait, else 1)
    dropout: float = 0.5  # dropout before each head
    repeat: int = 20  # training draws of each sample per epoch (PECoP repeats its list 20 times)
    official_steps: bool = False  # keep loop_load_rgb's quirks: step 1 after the segment, 4-frame look-ahead wrap
    bgr: bool = False  # feed BGR clips, as the official cv2 frames (never converted to RGB)
    update_frozen_bn: bool = False  # let the frozen I3D's BN running stats update (official: model.train())


class VSPPModel(nn.Module):
    """Backbone (I3D with adapters, or any backbone giving (B, D) features) and the two heads."""

    def __init__(self, backbone: nn.Module, max_sr: int, max_segment: int, dropout: float,
                 bgr: bool = False):
        super().__init__()
        from aqa.models.i3d import Unit3D

        self.backbone, self.bgr = backbone, bgr
        self.dropout = nn.Dropout(dropout)  # one module, two draws (as the official VSPP)
        dim = backbone.out_dim
        self.logits_p = Unit3D(dim, max_sr, bn=False, relu=False)  # 1x1x1 conv with bias
        self.logits_s = Unit3D(dim, max_segment, bn=False, relu=False)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, T, H, W) -> pace logits (B, max_sr), segment logits (B, max_segment)."""
        if self.bgr:
            video = video.flip(1)  # RGB -> BGR
        if hasattr(self.backbone, "features_at"):  # I3D: (B, 1024, T'-1, 1, 1)
            x = self.backbone.pool(self.backbone.features_at(video))
        else:  # a feature backbone (tiny3d in tests): (B, D, 1, 1, 1)
            x = self.backbone(video)[:, :, None, None, None]
        p = self.logits_p(self.dropout(x)).flatten(2).mean(2)  # (B, max_sr, T'') -> (B, max_sr)
        s = self.logits_s(self.dropout(x)).flatten(2).mean(2)  # (B, max_segment)
        return p, s


class VSPPDataset:
    """Each sample of ``clips`` (a ClipDataset or a SampleSubset of one) as a VSPP clip: a random
    segment and rate per draw at train time, one fixed draw per sample at test time, both from
    the dataset's seeded per-sample streams. Items add ``pace`` and ``segment`` (int64) and carry
    the class ``pace * max_segment + segment`` as their score."""

    def __init__(self, clips: Any, train: bool, fr: int, cfg: PECoPConfig, clip_len: int):
        base, index = clips, None
        if hasattr(clips, "indices") and hasattr(clips, "dataset"):  # SampleSubset
            base, index = clips.dataset, list(clips.indices)
        if not hasattr(base, "item_at"):
            raise ConfigError("pecop reads its own frame positions and needs a dataset of clips "
                              "(aqa.data.base.ClipDataset)")
        self.base, self.index, self.clips = base, index, clips
        self.samples = clips.samples
        self.extra_keys = getattr(clips, "extra_keys", ())
        self.excluded = getattr(clips, "excluded", ())
        self.repeat = max(1, cfg.repeat) if train else 1
        self.fr, self.cfg, self.clip_len = fr, cfg, clip_len

    def __len__(self) -> int:
        return len(self.samples) * self.repeat

    def __getitem__(self, k: int) -> dict:
        from aqa.data.base import num_available
        from aqa.data.sampling import draw_vspp

        j = k % len(self.samples)
        i = j if self.index is None else self.index[j]
        c, n = self.cfg, num_available(self.base.samples[i])
        rng = self.base._rng(i)  # train: a new stream per draw; test: the same every time
        clip = draw_vspp(rng, n, self.fr, c.max_sr, self.clip_len, c.max_segment, c.official_steps)
        # official_steps may step once past the n usable frames; PECoP then reads that file (its
        # lists keep 3 frames more than it uses), so a frame folder is read there too
        last = n if c.official_steps and self.base.samples[i].is_frame_folder else n - 1
        positions = [min(p, last) for p in clip.indices]
        item = self.base.item_at(i, positions, rng)
        item["pace"] = torch.tensor(clip.pace, dtype=torch.int64)
        item["segment"] = torch.tensor(clip.segment, dtype=torch.int64)
        item["score"] = torch.tensor(float(clip.pace * c.max_segment + clip.segment))
        return item


@METHODS.register("pecop")
class PECoP(Method):
    name = "pecop"
    config_cls = PECoPConfig
    default_backbone = "i3d"
    pretext = True  # a pretext task: `aqa pretrain`; its backbone is what other methods fine-tune
    description = "PECoP: VSPP pretext task on a frozen I3D with 3D adapters (aqa pretrain)"

    @classmethod
    def adjust_defaults(cls, cfg: RunConfig) -> RunConfig:
        """docs/methods.md, PECoP: SGD lr 0.01, momentum 0.9, wd 1e-4, CosineAnnealingLR(T_max 22,
        eta_min lr/1000), 8 epochs, batch 16, 32-frame clips; a frozen hassony2 I3D with
        adapters fed ImageNet-normalised clips (model_rgb.pth's preprocessing); the clips flipped at
        random and resized as cv2 frames through torch_videovision (``tvv_cv2``)."""
        backbone = cfg.backbone
        if hasattr(backbone, "adapters"):
            backbone = replace(backbone, adapters=True, freeze=True, family="hassony2",
                               input_norm="imagenet", dropout=0.0)
        data = replace(cfg.data, hflip=True)  # train.py: RandomHorizontalFlip
        if hasattr(data, "pipeline"):  # cv2 frames through torch_videovision (docs/methods.md, PECoP)
            data = replace(data, pipeline="tvv_cv2")
        return replace(cfg, backbone=backbone,
                       optim=replace(cfg.optim, name="sgd", lr=0.01, momentum=0.9,
                                     weight_decay=1e-4, schedule="cosine", cosine_epochs=22,
                                     min_lr_factor=1e-3),
                       train=replace(cfg.train, epochs=8, batch_size=16, best_metric="accuracy"),
                       data=replace(data, num_frames=32))

    @property
    def fr(self) -> int:
        """The default rate: model.fr, or 3 for PD4T's gait task (PECoP's default) and 1 else."""
        if self.cfg.model.fr:
            return self.cfg.model.fr
        return 3 if self.cfg.dataset == "pd4t" and getattr(self.cfg.data, "task", "") == "gait" else 1

    def build_model(self) -> nn.Module:
        from aqa.models.i3d import read_pecop_heads

        m, b = self.cfg.model, self.cfg.backbone
        if m.max_sr < 2 or m.max_segment < 1:
            raise ConfigError("pecop needs model.max_sr >= 2 and model.max_segment >= 1")
        backbone = BACKBONES.get(b.name).build(b)
        if b.freeze:  # PECoP: the I3D frozen, its adapters trained
            for name, p in backbone.named_parameters():
                p.requires_grad_(is_adapter_key(name))
        model = VSPPModel(backbone, m.max_sr, m.max_segment, m.dropout, m.bgr)
        heads = read_pecop_heads(b.weights) if b.name == "i3d" else {}
        if heads:  # an official gait_adapterNN.pth.tar or a pecop run: continue its pretext
            own = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in HEADS}
            if set(heads) == set(own) and all(heads[k].shape == own[k].shape for k in own):
                model.load_state_dict(heads, strict=False)
                log.info(f"pecop: the pace and segment heads start from {b.weights}")
            else:
                log.warning(f"pecop: the heads in {b.weights} do not fit max_sr={m.max_sr}, "
                            f"max_segment={m.max_segment}; they start fresh")
        return model

    def wrap_dataset(self, clips: Any, split: str, train_clips: Any) -> Any:
        return VSPPDataset(clips, split == "train", self.fr, self.cfg.model, self.cfg.data.num_frames)

    def set_train_mode(self, model: nn.Module) -> None:
        """train(); the frozen backbone's BatchNorm layers stay in eval mode (their statistics
        fixed) unless ``model.update_frozen_bn`` (the official behaviour); ``backbone.freeze_bn``
        is honoured by the base class either way."""
        super().set_train_mode(model)
        inner = getattr(model, "module", model)  # DistributedDataParallel
        if self.cfg.backbone.freeze and not self.cfg.model.update_frozen_bn:
            set_bn_eval(inner.backbone)

    def losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        p, s = model(batch["video"])
        pace = F.cross_entropy(p.float(), batch["pace"])
        segment = F.cross_entropy(s.float(), batch["segment"])
        return {"loss": pace + segment, "pace": pace, "segment": segment}

    def predict(self, model: nn.Module, batch: dict) -> torch.Tensor:
        """(B,) the predicted class ``pace * max_segment + segment``."""
        p, s = model(batch["video"])
        return (p.argmax(1) * self.cfg.model.max_segment + s.argmax(1)).float()

    def eval_metrics(self, preds: list[float], labels: list[float]) -> dict[str, float]:
        k = self.cfg.model.max_segment
        p, y = np.rint(preds).astype(int), np.rint(labels).astype(int)
        if len(y) == 0:
            return {"accuracy": float("nan"), "pace_acc": float("nan"), "segment_acc": float("nan")}
        pace = float(np.mean(p // k == y // k))
        return {"accuracy": pace, "pace_acc": pace, "segment_acc": float(np.mean(p % k == y % k))}

    def example_batch(self, batch_size: int, device: torch.device | str = "cpu") -> dict:
        batch = super().example_batch(batch_size, device)
        gen = torch.Generator().manual_seed(1)
        m = self.cfg.model
        batch["pace"] = torch.randint(0, m.max_sr, (batch_size,), generator=gen).to(device)
        batch["segment"] = torch.randint(0, m.max_segment, (batch_size,), generator=gen).to(device)
        batch["score"] = (batch["pace"] * m.max_segment + batch["segment"]).float()
        return batch

    def module_sizes(self, model: nn.Module) -> dict[str, int]:
        adapters = sum(p.numel() for p in adapter_parameters(model.backbone))
        backbone = count_parameters(model.backbone) - adapters
        total = count_parameters(model)
        return {"backbone": backbone, "adapters": adapters, "heads": total - backbone - adapters,
                "trainable": count_parameters(model, trainable_only=True), "total": total}

    def score_clip(self, model: nn.Module, batch: dict, state: dict | None = None) -> dict[str, Any]:
        raise ConfigError("pecop is a pretext task and scores no clip: fine-tune a scoring "
                          "method from it (python -m aqa train --method usdl ... --set "
                          "backbone.weights=<this run>)")
