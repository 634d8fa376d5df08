"""Official ECANet ImageNet checkpoints (github.com/BangguWu/ECANet).

``eca_resnet{18,34,50,101,152}`` ``.pth.tar`` files: ``{'state_dict': ...}``
saved from ``nn.DataParallel`` (keys prefixed ``module.``), torchvision-style
ResNet keys (``conv1``/``bn1``, ``layerX.Y.conv1..bn3``, ``downsample.0/1``),
ECA at ``layerX.Y.eca.conv.weight`` ([1, 1, k]) and the classifier ``fc.*``.
These are already ECAResNet's key names: only ``fc.*`` is dropped.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from .common import StateDict, Structure, generic_cfg

LAYOUT = 'official'


def matches(keys: List[str]) -> bool:
    """True for the official layout (ECA modules named ``eca``)."""
    return any(k.endswith('.eca.conv.weight') for k in keys)


def rename(sd: StateDict) -> Tuple[StateDict, Dict[str, str], List[str]]:
    """Map to ECAResNet keys.

    Returns:
        (converted state dict, converted key -> source key, dropped keys).
    """
    out: StateDict = {}
    dropped = []
    for k, v in sd.items():
        if k.startswith('fc.'):
            dropped.append(k)
        else:
            out[k] = v
    return out, {k: k for k in out}, dropped


def backbone_cfg(st: Structure, src: str) -> Tuple[dict, None]:
    """The ECAResNet config (by depth) and no arch name."""
    return generic_cfg(st, src), None
