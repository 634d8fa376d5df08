"""ECA-ResNet backbones: mmdet's ResNet with Efficient Channel Attention."""

from typing import List, Optional, Sequence, Tuple, Union

import torch.utils.checkpoint as cp
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.registry import MODELS
from torch import Tensor, nn

from . import eca_fast
from .eca import ECALayer, adaptive_kernel_size, check_kernel_size
from .presets import (
    ARCH_PRESETS,
    BASIC_BLOCK_DEPTHS,
    STAGE_BLOCKS,
    apply_pruned_widths,
    load_pruned_widths,
    resize_stem,
    resolve_arch,
)

KSize = Union[None, int, Sequence[int]]


class _ECAResidualForward:
    """``forward`` of the ECA blocks, as mmdet's: the residual branch plus
    the shortcut (``_inner_forward``), checkpointed under ``with_cp``, then
    ReLU."""

    def forward(self, x: Tensor) -> Tensor:
        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        else:
            out = self._inner_forward(x)
        return self.relu(out)


class ECABasicBlock(_ECAResidualForward, BasicBlock):
    """mmdet's BasicBlock with ECA after ``norm2``, before the residual add.

    Args:
        inplanes (int): Input channels.
        planes (int): Output channels.
        eca_k_size (int, optional): ECA kernel size; None picks it from
            ``planes``.
        **kwargs: Every other :class:`mmdet.models.backbones.resnet.BasicBlock`
            argument.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        eca_k_size: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(inplanes, planes, **kwargs)
        self.eca = ECALayer(planes, eca_k_size)

    def _inner_forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        if self.eca.fused:  # the same sum in fewer passes
            return eca_fast.gate_in_add(self.eca, out, identity, inplace=True)
        return identity + self.eca(out)


class ECABottleneck(_ECAResidualForward, Bottleneck):
    """mmdet's Bottleneck with ECA after ``norm3`` (and any ``after_conv3``
    plugins), before the residual add.

    Args:
        inplanes (int): Input channels.
        planes (int): Width of the 3x3 conv; the output has ``4 * planes``.
        eca_k_size (int, optional): ECA kernel size; None picks it from the
            output channels.
        **kwargs: Every other :class:`mmdet.models.backbones.resnet.Bottleneck`
            argument (stride, dilation, downsample, style, with_cp, conv_cfg,
            norm_cfg, dcn, plugins, init_cfg).
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        eca_k_size: Optional[int] = None,
        **kwargs,
    ) -> None:
        super().__init__(inplanes, planes, **kwargs)
        self.eca = ECALayer(planes * self.expansion, eca_k_size)

    def _inner_forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv1_plugin_names)
        out = self.relu(self.norm2(self.conv2(out)))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv2_plugin_names)
        identity = x if self.downsample is None else self.downsample(x)
        if self.eca.fused:  # the same sum in fewer passes
            return eca_fast.bottleneck_tail(self, out, identity)
        out = self.norm3(self.conv3(out))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv3_plugin_names)
        return identity + self.eca(out)


@MODELS.register_module()
class ECAResNet(ResNet):
    """ECA-ResNet backbone (ECA-Net, CVPR 2020) on top of mmdet's ResNet.

    Every residual block gets Efficient Channel Attention after the last norm
    of its residual branch, before the addition. State-dict keys follow
    mmdet's ResNet, plus ``layerX.Y.eca.conv.weight``.

    Args:
        depth (int, optional): 18, 34 (basic blocks), 26, 50, 101, 152, 200,
            269 (bottlenecks). Taken from ``arch`` when that is given.
        arch (str, optional): A preset of timm's ECA-ResNets, one of
            :data:`ARCH_PRESETS` (``'ecaresnet50d'``, ``'ecaresnet50t'``,
            ``'ecaresnet26t'``, ``'ecaresnetlight'``, ``'ecaresnet101d'``,
            ``'ecaresnet200d'``, ``'ecaresnet269d'``,
            ``'ecaresnet50d_pruned'``, ``'ecaresnet101d_pruned'``). Presets
            set depth, the stem, ``avg_down=True`` and block counts/widths.
        eca_k_size (int | Sequence[int], optional): ECA kernel size: None
            (adaptive from each stage's channels, gamma=2, b=1), one odd int
            for all stages, or one per stage, e.g. ``(3, 5, 5, 7)``.
        stem_mid_channels (tuple[int, int], optional): Widths of the first two
            convs of the deep stem (timm's tiered stem: ``(24, 32)``).
            Defaults to ``(stem_channels // 2,) * 2``, mmdet's deep stem.
        stage_blocks (Sequence[int], optional): Blocks per stage, overriding
            the depth's (``ecaresnetlight``: ``(1, 1, 11, 3)``).
        eca_fused (bool): Run each block's ECA and residual add through
            the fast paths of :mod:`~eca_mmdet.models.eca_fast` (default;
            same values, fewer passes); False runs ``identity + eca(out)``
            as written, the paper's form, e.g. for comparisons.
        deep_stem (bool): Three 3x3 convs instead of the 7x7 stem.
        avg_down (bool): AvgPool then stride-1 conv in downsample shortcuts.
        in_channels, stem_channels, base_channels, num_stages, strides,
        dilations, out_indices, style, frozen_stages, conv_cfg, norm_cfg,
        norm_eval, dcn, stage_with_dcn, plugins, with_cp, zero_init_residual,
        pretrained, init_cfg: as in :class:`mmdet.models.ResNet`. Frozen
        stages freeze their ECA weights too.

    Attributes:
        out_channels (list[int]): Output channels of every stage (size the
            FPN's ``in_channels`` from ``[out_channels[i] for i in
            out_indices]``); see also :func:`stage_out_channels`.
    """

    arch_settings = {
        depth: (
            ECABasicBlock if depth in BASIC_BLOCK_DEPTHS else ECABottleneck,
            blocks,
        )
        for depth, blocks in STAGE_BLOCKS.items()
    }

    def __init__(
        self,
        depth: Optional[int] = None,
        arch: Optional[str] = None,
        eca_k_size: KSize = None,
        stem_mid_channels: Optional[Tuple[int, int]] = None,
        stage_blocks: Optional[Sequence[int]] = None,
        eca_fused: bool = True,
        deep_stem: bool = False,
        avg_down: bool = False,
        num_stages: int = 4,
        zero_init_residual: bool = True,
        init_cfg: Union[dict, List[dict], None] = None,
        pretrained: Optional[str] = None,
        **kwargs,
    ) -> None:
        pruned = False
        if arch is not None:
            preset = dict(resolve_arch(arch))
            if depth is not None and depth != preset['depth']:
                raise ValueError(
                    f'arch={arch!r} has depth {preset["depth"]}, '
                    f'but depth={depth} was given'
                )
            depth = preset['depth']
            deep_stem = preset.get('deep_stem', False)
            stem_mid_channels = preset.get('stem_mid_channels')
            stage_blocks = preset.get('stage_blocks', stage_blocks)
            avg_down = True
            pruned = preset.get('pruned', False)
        if depth not in self.arch_settings:
            raise ValueError(
                f'invalid depth {depth!r} for ECAResNet; choose '
                f'from {sorted(self.arch_settings)} or an arch '
                f'from {sorted(ARCH_PRESETS)}'
            )
        # State the overridden hooks (_make_stem_layer, make_res_layer) need
        # while ResNet.__init__ runs.
        block = self.arch_settings[depth][0]
        if stage_blocks is not None:
            self.arch_settings = {depth: (block, tuple(stage_blocks))}
        self.arch = arch
        self.stem_mid_channels = stem_mid_channels
        self.pruned_widths = load_pruned_widths(arch) if pruned else None
        self.eca_k_sizes = _per_stage_k(eca_k_size, num_stages)
        self.out_channels: List[int] = []
        self._zero_init_blocks = (
            zero_init_residual and init_cfg is None and pretrained is None
        )
        super().__init__(
            depth,
            deep_stem=deep_stem,
            avg_down=avg_down,
            num_stages=num_stages,
            zero_init_residual=zero_init_residual,
            init_cfg=init_cfg,
            pretrained=pretrained,
            **kwargs,
        )
        self.feat_dim = self.out_channels[-1]
        for module in self.modules():
            if isinstance(module, ECALayer):
                module.fused = eca_fused

    def train(self, mode: bool = True) -> 'ECAResNet':
        """As mmdet's ResNet.train (norm_eval, frozen stages), returning self
        like ``nn.Module.train`` so that ``model.eval()`` chains."""
        super().train(mode)
        return self

    def describe(self) -> str:
        """``ECAResNet(depth=.., eca_k_size=(..))``, as messages name it."""
        what = f'arch={self.arch!r}' if self.arch else f'depth={self.depth}'
        ks = tuple(
            getattr(self, name)[0].eca.k_size for name in self.res_layers
        )
        return f'ECAResNet({what}, eca_k_size={ks})'

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        super()._make_stem_layer(in_channels, stem_channels)
        if self.deep_stem and self.stem_mid_channels is not None:
            resize_stem(
                self.stem, in_channels, self.stem_mid_channels, self.norm_cfg
            )

    def make_res_layer(self, **kwargs) -> nn.Module:
        """Build stage ``len(self.res_layers)`` with its ECA kernel size."""
        stage = len(self.res_layers)
        block, planes = kwargs['block'], kwargs['planes']
        k = self.eca_k_sizes[stage]
        kwargs['eca_k_size'] = (
            k
            if k is not None
            else adaptive_kernel_size(planes * block.expansion)
        )
        if stage > 0:
            kwargs['inplanes'] = self.out_channels[stage - 1]
        if kwargs.get('init_cfg') is None and self._zero_init_blocks:
            last_norm = 'norm3' if issubclass(block, Bottleneck) else 'norm2'
            kwargs['init_cfg'] = dict(
                type='Constant', val=0, override=dict(name=last_norm)
            )
        layer = super().make_res_layer(**kwargs)
        if self.pruned_widths is not None:
            if self.plugins:
                raise ValueError('plugins are not supported with pruned archs')
            apply_pruned_widths(
                layer,
                self.pruned_widths[stage],
                kwargs['inplanes'],
                self.norm_cfg,
            )
            self.out_channels.append(self.pruned_widths[stage]['out'])
        else:
            self.out_channels.append(planes * block.expansion)
        return layer


def _per_stage_k(eca_k_size: KSize, num_stages: int) -> List[Optional[int]]:
    """Validate ``eca_k_size`` and spread it over the stages."""
    if eca_k_size is None:
        return [None] * num_stages
    if isinstance(eca_k_size, int):
        return [check_kernel_size(eca_k_size, 'eca_k_size')] * num_stages
    ks = list(eca_k_size)
    if len(ks) != num_stages:
        raise ValueError(
            f'eca_k_size needs one kernel size per stage '
            f'({num_stages}), got {tuple(ks)}'
        )
    return [check_kernel_size(k, f'eca_k_size[{i}]') for i, k in enumerate(ks)]
