"""Layouts of the ECA-ResNets: depths, timm's presets, pruned widths, and
the resizing of mmdet's layers they need.

The backbone (:class:`~eca_mmdet.models.ECAResNet`) builds mmdet's ResNet
and then, for a preset, swaps some convs and norms for ones of other
widths (:func:`resize_stem`, :func:`apply_pruned_widths`); the converters
read the same layouts to map timm's and the official checkpoints.
"""

import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from mmcv.cnn import build_norm_layer
from torch import nn

# depth -> blocks per stage; 18 and 34 use basic blocks (expansion 1), the
# others bottlenecks (expansion 4)
STAGE_BLOCKS: Dict[int, Tuple[int, ...]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
    269: (3, 30, 48, 8),
}
BASIC_BLOCK_DEPTHS = (18, 34)

# timm's ECA-ResNet family, as options of this backbone. `pruned` archs take
# per-block widths from pruned_widths.json (facts read from timm's wheel).
ARCH_PRESETS: Dict[str, dict] = {
    'ecaresnet26t': dict(depth=26, deep_stem=True, stem_mid_channels=(24, 32)),
    'ecaresnet50d': dict(depth=50, deep_stem=True),
    'ecaresnet50t': dict(depth=50, deep_stem=True, stem_mid_channels=(24, 32)),
    'ecaresnetlight': dict(depth=50, stage_blocks=(1, 1, 11, 3)),
    'ecaresnet101d': dict(depth=101, deep_stem=True),
    'ecaresnet200d': dict(depth=200, deep_stem=True),
    'ecaresnet269d': dict(depth=269, deep_stem=True),
    'ecaresnet50d_pruned': dict(depth=50, deep_stem=True, pruned=True),
    'ecaresnet101d_pruned': dict(depth=101, deep_stem=True, pruned=True),
}
PRUNED_WIDTHS_FILE = osp.join(osp.dirname(__file__), 'pruned_widths.json')


def resolve_arch(arch: str) -> dict:
    """The preset of ``arch``, or a ValueError naming the known ones."""
    if arch not in ARCH_PRESETS:
        raise ValueError(
            f'unknown ECAResNet arch {arch!r}; known archs: '
            f'{", ".join(sorted(ARCH_PRESETS))}'
        )
    return ARCH_PRESETS[arch]


def load_pruned_archs() -> Dict[str, dict]:
    """``{arch: {'stem': [...], 'stages': [...]}}`` of the pruned archs, from
    :data:`PRUNED_WIDTHS_FILE`."""
    with open(PRUNED_WIDTHS_FILE) as f:
        return json.load(f)


def load_pruned_widths(arch: str) -> List[dict]:
    """Per-stage widths of a pruned arch: ``[{'out': C, 'blocks': [[c1, c2],
    ...]}, ...]`` (``c1``/``c2``: outputs of conv1/conv2 of each block)."""
    return load_pruned_archs()[arch]['stages']


def arch_layout(arch: str) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Blocks per stage and stem widths (plain: ``(64,)``; deep:
    ``(mid1, mid2, 64)``) of an unpruned arch of :data:`ARCH_PRESETS` with
    the default 64 stem channels."""
    preset = resolve_arch(arch)
    blocks = tuple(preset.get('stage_blocks') or STAGE_BLOCKS[preset['depth']])
    if not preset.get('deep_stem'):
        return blocks, (64,)
    return blocks, tuple(preset.get('stem_mid_channels', (32, 32))) + (64,)


def stage_out_channels(
    depth: Optional[int] = None, arch: Optional[str] = None
) -> List[int]:
    """Output channels of the 4 stages of an ECAResNet (e.g. for FPN
    ``in_channels``), without building it."""
    if arch is not None:
        preset = resolve_arch(arch)
        if preset.get('pruned'):
            return [s['out'] for s in load_pruned_widths(arch)]
        depth = preset['depth']
    if depth not in STAGE_BLOCKS:
        raise ValueError(f'invalid depth {depth!r} for ECAResNet')
    expansion = 1 if depth in BASIC_BLOCK_DEPTHS else 4
    return [64 * 2**i * expansion for i in range(4)]


def resized_conv(
    conv: nn.Module, in_channels: int, out_channels: int
) -> nn.Conv2d:
    """A fresh ``nn.Conv2d`` like ``conv`` with other channel counts."""
    if type(conv) is not nn.Conv2d:
        raise ValueError(
            'pruned widths need plain Conv2d layers; '
            f'got {type(conv).__name__} (drop dcn/conv_cfg)'
        )
    return nn.Conv2d(
        in_channels,
        out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
    )


def resize_stem(
    stem: nn.Sequential,
    in_channels: int,
    mid_channels: Sequence[int],
    norm_cfg: dict,
) -> None:
    """Give mmdet's deep stem (conv, norm, relu) x 3 the widths
    ``mid_channels`` for its first two convs (timm's tiered stem)."""
    mid1, mid2 = mid_channels
    stem[0] = resized_conv(stem[0], in_channels, mid1)
    stem[1] = build_norm_layer(norm_cfg, mid1)[1]
    stem[3] = resized_conv(stem[3], mid1, mid2)
    stem[4] = build_norm_layer(norm_cfg, mid2)[1]
    stem[6] = resized_conv(stem[6], mid2, stem[6].out_channels)


def apply_pruned_widths(
    layer: nn.Module, widths: dict, in_channels: int, norm_cfg: dict
) -> None:
    """Swap each conv/norm of the bottlenecks of ``layer`` (one stage) for
    one of the pruned width (``widths``: one stage of
    :func:`load_pruned_widths`)."""
    out = widths['out']

    def norm(channels: int) -> nn.Module:
        return build_norm_layer(norm_cfg, channels)[1]

    for block, (mid1, mid2) in zip(layer, widths['blocks']):
        block.conv1 = resized_conv(block.conv1, in_channels, mid1)
        setattr(block, block.norm1_name, norm(mid1))
        block.conv2 = resized_conv(block.conv2, mid1, mid2)
        setattr(block, block.norm2_name, norm(mid2))
        block.conv3 = resized_conv(block.conv3, mid2, out)
        setattr(block, block.norm3_name, norm(out))
        if block.downsample is not None:
            block.downsample[-2] = resized_conv(
                block.downsample[-2], in_channels, out
            )
            block.downsample[-1] = norm(out)
        in_channels = out
