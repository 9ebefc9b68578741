"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, CVPR 2017), in the two code families
the AQA papers use (docs/methods.md, Backbones), so their weight files load with no key surgery.

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

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from aqa.errors import ConfigError
from aqa.models.adapters import ADAPTER, ConvAdapter

FAMILIES = ("hassony2", "piergiaj")
INPUT_NORMS = ("unit_range", "imagenet")
# Activation layout: "channels_last" (N, T, H, W, C in memory) lets oneDNN's convolutions and
# ATen's pools run vectorised over channels without reordering every layer's input; on this
# project's CPUs it makes an I3D training step 1.4-1.7x and a forward 1.2x faster
# (docs/performance.md). "auto": channels_last on the CPU, contiguous elsewhere (not measured on
# GPUs here: choose channels_last there explicitly). The values differ from the contiguous
# layout's by float summation order only (about 1e-6 relative).
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
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
            pads = _pads(self.kernel, self.stride, x.shape[2:])
            c = self.conv3d
            if pads[0::2] == pads[1::2] and not _needs_grad(x, c.weight):  # inference: the
                # convolution pads (no copy of the input; bit-identical, tests/test_perf_paths.py)
                x = F.conv3d(x, c.weight, c.bias, c.stride, (pads[4], pads[2], pads[0]))
            else:
                x = self.conv3d(F.pad(x, pads) if any(pads) else x)
        else:
            x = self.conv3d(self.pad(x) if hasattr(self, "pad") else x)
        if self.bn_name:
            x = getattr(self, self.bn_name)(x)
        if not self.relu:
            return x
        return F.relu(x, inplace=not _needs_grad(x))  # in place when nothing backpropagates


class MaxPool3dSame(nn.Module):
    """Max pool with TF-SAME zero padding (inputs are post-ReLU, so zeros never win over data).
    hassony2: padding fixed at construction and ceil_mode=True; piergiaj: padding from the input."""

    def __init__(self, kernel, stride, family="hassony2"):
        super().__init__()
        self.kernel, self.stride, self.dynamic = kernel, stride, family == "piergiaj"
        self.pool = nn.MaxPool3d(kernel, stride, ceil_mode=not self.dynamic)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = x.shape[2:] if self.dynamic else (None, None, None)
        pads = _pads(self.kernel, self.stride, sizes)
        x = F.pad(x, pads) if any(pads) else x
        if _needs_grad(x):
            return self.pool(x)
        return separable_max_pool3d(x, self.kernel, self.stride, ceil_mode=not self.dynamic)


def _needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd will backpropagate through an op on ``tensors``."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def separable_max_pool3d(x: torch.Tensor, kernel, stride, ceil_mode: bool) -> torch.Tensor:
    """``nn.MaxPool3d(kernel, stride, ceil_mode=ceil_mode)(x)``, bit for bit, as one max over
    strided views per dimension (time, height, width): a max is exact in any order, and this is
    2-3x faster on the CPU than ATen's ``max_pool3d_with_indices``, which also writes the argmax
    indices inference never reads. For inference only (no indices, so no backward through it).
    Windows that ceil mode lets run past the end ignore the missing positions (-inf), as ATen."""
    for dim, k, s in zip((2, 3, 4), kernel, stride):
        if k == 1 and s == 1:
            continue
        size = x.shape[dim]
        n = (size - k + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (n - 1) * s >= size:  # ATen: the last window starts inside the input
            n -= 1
        need = (n - 1) * s + k
        if need > size:
            x = F.pad(x, [0, 0] * (4 - dim) + [0, need - size], value=float("-inf"))
        out = None
        for i in range(k):
            view = x.narrow(dim, i, (n - 1) * s + 1)
            if s > 1:
                view = view[(slice(None),) * dim + (slice(None, None, s),)]
            out = view if out is None else torch.maximum(out, view)
        x = out
    return x


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
                 adapters: bool = False, memory_format: str = "auto"):
        super().__init__()
        if family not in FAMILIES:
            raise ConfigError(f"i3d family {family!r}: expected one of {', '.join(FAMILIES)}")
        if input_norm not in INPUT_NORMS:
            raise ConfigError(f"i3d input_norm {input_norm!r}: expected one of "
                              f"{', '.join(INPUT_NORMS)}")
        if memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"i3d memory_format {memory_format!r}: expected one of "
                              f"{', '.join(MEMORY_FORMATS)}")
        self.memory_format = memory_format
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
        channels_last = self.channels_last(x)
        if channels_last:  # every layer keeps the layout (convolution, BN, ReLU, pad, pool, cat)
            x = x.contiguous(memory_format=torch.channels_last_3d)
        if start is None and x.dtype == torch.uint8:
            x = self.normalize(x)
        for name in ENDPOINTS[first:last + 1]:
            mod = getattr(self, self.names[name])
            if self.checkpointing and isinstance(mod, Mixed) and torch.is_grad_enabled():
                x = checkpoint(mod, x, use_reentrant=False,  # recompute in backward: less memory
                               context_fn=lambda m=mod: (contextlib.nullcontext(), _bn_frozen(m)))
            else:
                x = mod(x)
        return x.contiguous() if channels_last else x  # callers may .view() the map

    def channels_last(self, x: torch.Tensor) -> bool:
        """Whether ``features_at`` runs ``x`` in the channels-last layout (``memory_format``)."""
        if x.dim() != 5 or self.memory_format == "contiguous":
            return False
        return self.memory_format == "channels_last" or x.device.type == "cpu"

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
