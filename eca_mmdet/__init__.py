"""eca-mmdet: ECA-ResNet backbones for MMDetection 3.x.

``import eca_mmdet`` (or ``custom_imports=dict(imports=['eca_mmdet'])`` in a
config) only adds registry entries: the backbone and layers, hooks, the image
loader and the CPU DDP wrapper. It changes nothing else in mmengine or torch.
The workarounds for the stack are explicit: ``eca_mmdet.stack_fixes`` (see
:mod:`eca_mmdet.engine.fixes`).
"""

from . import (
    datasets,  # noqa: F401  (SafeLoadImageFromFile)
    engine,  # noqa: F401  (CPUDistributedDataParallel)
    hooks,  # noqa: F401  (safety, progress and rendering hooks)
    models,  # noqa: F401  (ECAResNet, ECALayer)
)
from .config_files import config_path

__all__ = ['config_path']
__version__ = '0.1.0'
