"""Efficient Channel Attention (ECA-Net, CVPR 2020, arXiv:1910.03151)."""
import math
from typing import Optional

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
    if isinstance(k_size, bool) or not isinstance(k_size, int) \
            or k_size < 1 or k_size % 2 == 0:
        raise ValueError(f'{name} must be a positive odd integer '
                         f'(the 1-D conv keeps the channel count), got {k_size!r}')
    return k_size


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
        fused (bool): In :meth:`forward_residual`, fold the gate into the
            residual add (one pass, the default); False runs the paper's
            straightforward form (:func:`eca_reference`) for comparison.
    """
    _abbr_ = 'eca'

    def __init__(self,
                 channels: Optional[int] = None,
                 k_size: Optional[int] = None,
                 gamma: float = 2,
                 b: float = 1,
                 in_channels: Optional[int] = None,
                 fused: bool = True) -> None:
        super().__init__()
        channels = channels if channels is not None else in_channels
        if k_size is None:
            if channels is None:
                raise ValueError('ECALayer needs channels (or in_channels) '
                                 'when k_size is None')
            k_size = adaptive_kernel_size(channels, gamma, b)
        self.k_size = check_kernel_size(k_size)
        self.fused = fused
        self.conv = nn.Conv1d(1, 1, self.k_size, padding=self.k_size // 2,
                              bias=False)

    def gate(self, x: Tensor) -> Tensor:
        """The per-channel attention weights of ``x``, shaped (N, C, 1, 1)."""
        n, c = x.shape[:2]
        pooled = x.mean((2, 3)).view(n, 1, c)
        return torch.sigmoid(self.conv(pooled)).view(n, c, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Scale ``x`` by its channel attention."""
        return x * self.gate(x)

    def forward_residual(self, x: Tensor, identity: Tensor) -> Tensor:
        """``identity + self(x)``; fused: the gate folded into the add."""
        if not self.fused:
            return identity + eca_reference(x, self.conv.weight)
        return torch.addcmul(identity, x, self.gate(x))

    def extra_repr(self) -> str:
        return f'k_size={self.k_size}, fused={self.fused}'


def eca_reference(x: Tensor, weight: Tensor) -> Tensor:
    """Straightforward ECA, as written in the paper, for comparisons.

    Pools with ``adaptive_avg_pool2d``, transposes to run the 1-D conv
    across channels and transposes back, then scales ``x``.
    """
    k = weight.shape[-1]
    y = F.adaptive_avg_pool2d(x, 1)                       # N, C, 1, 1
    y = F.conv1d(y.squeeze(-1).transpose(-1, -2), weight, padding=k // 2)
    y = torch.sigmoid(y.transpose(-1, -2).unsqueeze(-1))  # N, C, 1, 1
    return x * y.expand_as(x)
