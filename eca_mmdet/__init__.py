"""eca-mmdet: ECA-ResNet backbones for MMDetection 3.x.

``import eca_mmdet`` (or ``custom_imports=dict(imports=['eca_mmdet'])`` in a
config) registers the backbone, layers and hooks in mmdet's registries.
"""
from . import models  # noqa: F401  (registers ECAResNet, ECALayer)
from . import engine  # noqa: F401  (safe checkpoint loading, CPU DDP)
from . import hooks  # noqa: F401  (ProgressGifHook)
from . import datasets  # noqa: F401  (SafeLoadImageFromFile)

__version__ = '0.1.0'
