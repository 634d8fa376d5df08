"""Efficient Channel Attention (ECA-Net, CVPR 2020, arXiv:1910.03151).

ECA weighs each channel of a feature map by a gate computed from the map
itself: average-pool each channel to one number, let each channel look at
its ``k`` neighbours with a 1-D convolution across channels (no bias, no
dimensionality reduction), squash with a sigmoid, and scale the map::

    gate = sigmoid(conv1d_k(mean_hw(x)))    # (N, C, 1, 1)
    out  = x * gate

``k`` grows with the channel count, ``k = psi(C)`` (:func:`adaptive_kernel_size`).

This module is the paper's form. The residual blocks of
:mod:`~eca_mmdet.models.ecaresnet` run the same arithmetic faster by
default; how and at what measured gain is in
:mod:`~eca_mmdet.models.eca_fast`.
"""

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.registry import MODELS as ROOT_MODELS
from torch import Tensor, nn


def adaptive_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    """The paper's k = psi(C): ``int(|(log2 C + b) / gamma|)``, made odd, at least 3."""
    t = int(abs((math.log2(channels) + b) / gamma))
    return max(t if t % 2 else t + 1, 3)


def check_kernel_size(k_size: int, name: str = 'k_size') -> int:
    """Return ``k_size`` if it is a positive odd int, else raise ValueError."""
    if (
        isinstance(k_size, bool)
        or not isinstance(k_size, int)
        or k_size < 1
        or k_size % 2 == 0
    ):
        raise ValueError(
            f'{name} must be a positive odd integer '
            f'(the 1-D conv keeps the channel count), got {k_size!r}'
        )
    return k_size


def eca_gate(pooled: Tensor, weight: Tensor, padding: int) -> Tensor:
    """ECA's gate of channel-pooled features: the 1-D conv across channels,
    then the sigmoid; (N, C) -> (N, C, 1, 1).

    ``padding`` is a plain int (``k // 2``), so that a traced or exported
    graph holds it as a constant.
    """
    y = F.conv1d(pooled.unsqueeze(1), weight, padding=padding)  # (N, 1, C)
    return torch.sigmoid(y).squeeze(1).unsqueeze(-1).unsqueeze(-1)


# In mmdet's registry for configs, and in mmengine's root registry where
# mmcv's build_plugin_layer looks when no default scope is set.
@ROOT_MODELS.register_module()
@MODELS.register_module()
class ECALayer(nn.Module):
    """Efficient Channel Attention: pool, 1-D conv across channels, sigmoid, scale.

    Also usable as an mmdet ResNet plugin, e.g.
    ``plugins=[dict(cfg=dict(type='ECALayer'), position='after_conv3')]``
    (mmcv passes the channel count as ``in_channels``).

    Args:
        channels (int, optional): Input channels; used only to pick k adaptively.
        k_size (int, optional): Kernel size of the 1-D conv (odd). ``None``
            picks it from ``channels`` with :func:`adaptive_kernel_size`.
        gamma (float): gamma of the adaptive rule. Defaults to 2.
        b (float): b of the adaptive rule. Defaults to 1.
        in_channels (int, optional): Alias of ``channels`` for plugin use.
        fused (bool): Whether the residual block that owns this layer runs
            it through :mod:`~eca_mmdet.models.eca_fast` (the default) or
            as ``identity + self(x)``. The layer's own :meth:`forward` is
            the paper's form either way.
    """

    _abbr_ = 'eca'
    # Called with (layer, gate) for every gate this layer computes, while
    # eca_mmdet.models.record_gates is active; otherwise None.
    gate_sink: Optional[Callable[['ECALayer', Tensor], None]] = None

    def __init__(
        self,
        channels: Optional[int] = None,
        k_size: Optional[int] = None,
        gamma: float = 2,
        b: float = 1,
        in_channels: Optional[int] = None,
        fused: bool = True,
    ) -> None:
        super().__init__()
        channels = channels if channels is not None else in_channels
        if k_size is None:
            if channels is None:
                raise ValueError(
                    'ECALayer needs channels (or in_channels) '
                    'when k_size is None'
                )
            k_size = adaptive_kernel_size(channels, gamma, b)
        self.k_size = check_kernel_size(k_size)
        self.padding = self.k_size // 2
        self.fused = fused
        self.conv = nn.Conv1d(
            1, 1, self.k_size, padding=self.padding, bias=False
        )

    def forward(self, x: Tensor) -> Tensor:
        """Scale each channel of ``x`` (N, C, H, W) by its gate."""
        pooled = x.mean((2, 3))  # global average pooling: (N, C)
        gate = self.gate_of_pooled(pooled)  # conv1d, sigmoid: (N, C, 1, 1)
        return x * gate

    def gate(self, x: Tensor) -> Tensor:
        """The gate of ``x``, (N, C, 1, 1): global average pooling, 1-D
        conv across channels, sigmoid."""
        return self.gate_of_pooled(x.mean((2, 3)))

    def gate_of_pooled(self, pooled: Tensor) -> Tensor:
        """The gate of channel means ``pooled`` (N, C), however the caller
        computed them; the one place every gate of this layer comes from."""
        gate = eca_gate(pooled, self.conv.weight, self.padding)
        if self.gate_sink is not None:
            self.gate_sink(self, gate)
        return gate

    def extra_repr(self) -> str:
        return f'k_size={self.k_size}, fused={self.fused}'
