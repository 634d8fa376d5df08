"""Parameters and FLOPs of backbones and detectors (mmengine's analysis).

FLOPs follow mmengine's ``FlopAnalyzer`` convention, as mmdet's
``get_flops.py``: one multiply-add counts as one FLOP, convolutions and
linear layers only (pooling, sigmoid, the ECA scaling and additions are not
counted).
"""

from functools import partial
from typing import Dict, Tuple

import torch
from mmengine.analysis import get_model_complexity_info
from torch import nn

# ECA-Net paper (Wang et al., CVPR 2020), Tables 2 and 5.
PAPER_STATS = {
    'ECA-Net50 (ImageNet, 224x224)': (24.37e6, 3.86e9),
    'Mask R-CNN ECA-Net50': (44.18e6, 275.69e9),
    'Mask R-CNN ECA-Net101': (63.17e6, 351.83e9),
}


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or frozen."""
    return sum(p.numel() for p in model.parameters())


def backbone_flops(backbone: nn.Module, hw: Tuple[int, int]) -> int:
    """FLOPs of one forward of ``backbone`` on a 1x3xHxW image."""
    backbone.eval()
    x = torch.zeros(1, 3, *hw)
    with torch.no_grad():
        info = get_model_complexity_info(
            backbone, inputs=(x,), show_table=False, show_arch=False
        )
    return int(info['flops'])


def detector_flops(detector: nn.Module, hw: Tuple[int, int]) -> int:
    """FLOPs of ``detector`` in 'tensor' mode on one HxW image (RPN, RoI
    heads on the RPN's proposals), as mmdet's get_flops.py counts them."""
    from mmdet.structures import DetDataSample

    h, w = hw
    sample = DetDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            scale_factor=(1.0, 1.0),
            batch_input_shape=(h, w),
            pad_shape=(h, w),
        )
    )
    detector.eval()
    forward = detector.forward
    detector.forward = partial(forward, data_samples=[sample], mode='tensor')
    try:
        with torch.no_grad():
            info = get_model_complexity_info(
                detector,
                inputs=(torch.zeros(1, 3, h, w),),
                show_table=False,
                show_arch=False,
            )
    finally:
        detector.forward = forward
    return int(info['flops'])


def format_stats(rows: Dict[str, Tuple[int, int]]) -> str:
    """Rows of ``name: (params, flops)`` as a table: parameters in M and
    exactly (ECA adds tens of them), FLOPs in G."""
    width = max(len(n) for n in rows)
    lines = [
        f'{"model":<{width}}  {"params (M)":>10}  {"params":>11}  '
        f'{"GFLOPs":>9}'
    ]
    for name, (params, flops) in rows.items():
        lines.append(
            f'{name:<{width}}  {params / 1e6:>10.2f}  '
            f'{params:>11,}  {flops / 1e9:>9.2f}'
        )
    return '\n'.join(lines)
