"""Models: the ECA layer and ECA-ResNet backbones (registered in mmdet's MODELS)."""

from .eca import (
    ECALayer,
    adaptive_kernel_size,
    eca_gate_reference,
    eca_reference,
)
from .ecaresnet import (
    ARCH_PRESETS,
    ECABasicBlock,
    ECABottleneck,
    ECAResNet,
    stage_out_channels,
)
from .gate_recording import (
    GateRecorder,
    NoEcaLayersError,
    eca_layers,
    record_gates,
    stage_of,
)

__all__ = [
    'ECALayer',
    'adaptive_kernel_size',
    'eca_reference',
    'ARCH_PRESETS',
    'ECABasicBlock',
    'ECABottleneck',
    'ECAResNet',
    'stage_out_channels',
    'GateRecorder',
    'NoEcaLayersError',
    'eca_gate_reference',
    'eca_layers',
    'record_gates',
    'stage_of',
]
