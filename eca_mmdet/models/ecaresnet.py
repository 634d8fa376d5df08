"""ECA-ResNet backbones: mmdet's ResNet with Efficient Channel Attention."""

import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmdet.models.backbones.resnet import BasicBlock, Bottleneck, ResNet
from mmdet.registry import MODELS
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .eca import (
    ECALayer,
    adaptive_kernel_size,
    check_kernel_size,
    graph_capture,
)

KSize = Union[None, int, Sequence[int]]

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


class _ECAResidualForward:
    """``forward`` of the ECA blocks: the residual branch with its ECA gate
    folded into the add (``_inner_forward``), checkpointed under
    ``with_cp``, then ReLU."""

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
        return self.eca.forward_residual(out, identity, inplace=True)


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
        affine = self._frozen_norm3_affine()
        if affine is not None:
            # norm3, ECA and the add as one op; ECA pools conv3's input
            scale, shift = affine
            pooled = F.linear(out.mean((2, 3)), self.conv3.weight.flatten(1))
            pooled = pooled * scale + shift
            if graph_capture():
                # plain ops; norm3 as a module, which exporters and
                # compilers fold into conv3 as they do for ResNet
                out = self.norm3(self.conv3(out))
                identity = x if self.downsample is None else self.downsample(x)
                return self.eca.forward_pooled_residual(out, identity, pooled)
            out = self.conv3(out)
            identity = x if self.downsample is None else self.downsample(x)
            return self.eca.forward_affine_residual(
                out, identity, scale, shift, pooled, inplace=True
            )
        out = self.norm3(self.conv3(out))
        if self.with_plugins:
            out = self.forward_plugin(out, self.after_conv3_plugin_names)
        identity = x if self.downsample is None else self.downsample(x)
        return self.eca.forward_residual(out, identity, inplace=True)

    def _frozen_norm3_affine(self) -> Optional[Tuple[Tensor, Tensor]]:
        """norm3 as a per-channel ``(scale, shift)``, when it is one and the
        fused ECA can absorb it: norm3 a BatchNorm on its running statistics
        (eval mode, or frozen as in mmdet's detection configs), conv3 a
        plain bias-free 1x1 conv (linear, so ECA's pooling commutes with
        it and runs on conv3's input, a quarter of the channels), no
        plugins after conv3. None otherwise (train-mode BN, GN, ...)."""
        conv, norm = self.conv3, self.norm3
        if (
            not self.eca.fused
            or norm.training
            or (self.with_plugins and self.after_conv3_plugin_names)
        ):
            return None
        if (
            type(conv) is not nn.Conv2d
            or conv.kernel_size != (1, 1)
            or conv.stride != (1, 1)
            or conv.groups != 1
            or conv.padding != (0, 0)
            or conv.bias is not None
        ):
            return None
        if not isinstance(norm, _BatchNorm) or norm.running_mean is None:
            return None
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        return scale, shift + norm.bias if norm.bias is not None else shift


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
    blocks = tuple(
        preset.get('stage_blocks')
        or ECAResNet.arch_settings[preset['depth']][1]
    )
    if not preset.get('deep_stem'):
        return blocks, (64,)
    return blocks, tuple(preset.get('stem_mid_channels', (32, 32))) + (64,)


def _resized_conv(
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
        eca_fused (bool): Fold each ECA gate into its residual add (default);
            False uses the paper's straightforward form, for benchmarks.
            Under ``torch.jit.trace``, ONNX export and ``torch.compile``
            the fused layers run as plain ops (see
            :func:`~eca_mmdet.models.eca.graph_capture`).
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
        18: (ECABasicBlock, (2, 2, 2, 2)),
        34: (ECABasicBlock, (3, 4, 6, 3)),
        26: (ECABottleneck, (2, 2, 2, 2)),
        50: (ECABottleneck, (3, 4, 6, 3)),
        101: (ECABottleneck, (3, 4, 23, 3)),
        152: (ECABottleneck, (3, 8, 36, 3)),
        200: (ECABottleneck, (3, 24, 36, 3)),
        269: (ECABottleneck, (3, 30, 48, 8)),
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
            mid1, mid2 = self.stem_mid_channels
            self.stem[0] = _resized_conv(self.stem[0], in_channels, mid1)
            self.stem[1] = build_norm_layer(self.norm_cfg, mid1)[1]
            self.stem[3] = _resized_conv(self.stem[3], mid1, mid2)
            self.stem[4] = build_norm_layer(self.norm_cfg, mid2)[1]
            self.stem[6] = _resized_conv(self.stem[6], mid2, stem_channels)

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
            self._apply_pruned_widths(
                layer, self.pruned_widths[stage], kwargs['inplanes']
            )
            self.out_channels.append(self.pruned_widths[stage]['out'])
        else:
            self.out_channels.append(planes * block.expansion)
        return layer

    def _apply_pruned_widths(
        self, layer: nn.Module, widths: dict, in_channels: int
    ) -> None:
        """Swap each conv/norm of ``layer`` for one of the pruned width."""
        if self.plugins:
            raise ValueError('plugins are not supported with pruned archs')
        out = widths['out']
        norm = lambda c: build_norm_layer(self.norm_cfg, c)[1]  # noqa: E731
        for block, (mid1, mid2) in zip(layer, widths['blocks']):
            block.conv1 = _resized_conv(block.conv1, in_channels, mid1)
            setattr(block, block.norm1_name, norm(mid1))
            block.conv2 = _resized_conv(block.conv2, mid1, mid2)
            setattr(block, block.norm2_name, norm(mid2))
            block.conv3 = _resized_conv(block.conv3, mid2, out)
            setattr(block, block.norm3_name, norm(out))
            if block.downsample is not None:
                block.downsample[-2] = _resized_conv(
                    block.downsample[-2], in_channels, out
                )
                block.downsample[-1] = norm(out)
            in_channels = out


def resolve_arch(arch: str) -> dict:
    """The preset of ``arch``, or a ValueError naming the known ones."""
    if arch not in ARCH_PRESETS:
        raise ValueError(
            f'unknown ECAResNet arch {arch!r}; known archs: '
            f'{", ".join(sorted(ARCH_PRESETS))}'
        )
    return ARCH_PRESETS[arch]


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
    if depth not in ECAResNet.arch_settings:
        raise ValueError(f'invalid depth {depth!r} for ECAResNet')
    expansion = ECAResNet.arch_settings[depth][0].expansion
    return [64 * 2**i * expansion for i in range(4)]
