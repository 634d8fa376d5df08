"""Models: the ECA layer and ECA-ResNet backbones (registered in mmdet's MODELS).

* :mod:`.eca`: the paper's ECA (:class:`ECALayer`, :func:`adaptive_kernel_size`);
* :mod:`.ecaresnet`: the backbone and its blocks;
* :mod:`.eca_fast`: the blocks' fast paths (``ECAResNet(eca_fused=True)``);
* :mod:`.presets`: depths, timm's presets and pruned widths;
* :mod:`.gate_recording`: recording the gates a forward computes.
"""

from .eca import ECALayer, adaptive_kernel_size, eca_gate
from .ecaresnet import ECABasicBlock, ECABottleneck, ECAResNet
from .gate_recording import (
    GateRecorder,
    NoEcaLayersError,
    eca_layers,
    record_gates,
    stage_of,
)
from .presets import (
    ARCH_PRESETS,
    arch_layout,
    load_pruned_archs,
    load_pruned_widths,
    resolve_arch,
    stage_out_channels,
)

__all__ = [
    'ECALayer',
    'adaptive_kernel_size',
    'eca_gate',
    'ARCH_PRESETS',
    'ECABasicBlock',
    'ECABottleneck',
    'ECAResNet',
    'arch_layout',
    'load_pruned_archs',
    'load_pruned_widths',
    'resolve_arch',
    'stage_out_channels',
    'GateRecorder',
    'NoEcaLayersError',
    'eca_layers',
    'record_gates',
    'stage_of',
]
