"""Independent reference for the converter tests (imports nothing from eca_mmdet).

* ``official_state_dict`` / ``timm_state_dict``: random, well-conditioned
  source state dicts in the official ECANet and timm ECA-ResNet layouts;
* ``reference_stages``: an eval-mode forward written with ``torch.nn.functional``
  only, driven by the *source* state dict's keys and shapes, returning the
  outputs of the 4 residual stages (C2..C5);
* ``eca_reference``: the paper's ECA on one feature map (also the reference
  of the ECA layer tests).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

StateDict = Dict[str, Tensor]
PRUNED_JSON = (
    Path(__file__).resolve().parents[1]
    / 'eca_mmdet'
    / 'models'
    / 'pruned_widths.json'
)

# official ECANet: depth -> (bottleneck?, blocks per stage)
OFFICIAL_DEPTHS = {
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
}
# timm ECA-ResNets (all Bottleneck + avg-down): arch -> (blocks, stem widths)
# stem widths: (out,) for the 7x7 stem, (mid1, mid2, out) for the deep stem
TIMM_ARCHS = {
    'ecaresnet26t': ((2, 2, 2, 2), (24, 32, 64)),
    'ecaresnet50d': ((3, 4, 6, 3), (32, 32, 64)),
    'ecaresnet50t': ((3, 4, 6, 3), (24, 32, 64)),
    'ecaresnetlight': ((1, 1, 11, 3), (64,)),
    'ecaresnet101d': ((3, 4, 23, 3), (32, 32, 64)),
    'ecaresnet200d': ((3, 24, 36, 3), (32, 32, 64)),
    'ecaresnet269d': ((3, 30, 48, 8), (32, 32, 64)),
    'ecaresnet50d_pruned': None,  # widths from PRUNED_JSON
    'ecaresnet101d_pruned': None,
}
TIMM_K = (5, 5, 5, 7)  # timm's adaptive k for 256/512/1024/2048 channels


class _Gen:
    """Random tensors of a fixed dtype from one seeded generator."""

    def __init__(self, seed: int, dtype: torch.dtype) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.dtype = dtype

    # drawn in float32 (3x faster for the 100M-parameter nets), stored as dtype
    def normal(self, *shape: int, std: float = 1.0) -> Tensor:
        return torch.randn(*shape, generator=self.g).to(self.dtype) * std

    def uniform(self, lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=self.g).to(
            self.dtype
        )

    def conv(
        self, out_ch: int, in_ch: int, k: int, gain: float = math.sqrt(2.0)
    ) -> Tensor:
        """Kaiming-normal-ish conv weight (``gain`` < sqrt 2 damps a branch)."""
        return self.normal(
            out_ch, in_ch, k, k, std=gain / math.sqrt(in_ch * k * k)
        )

    def bn(self, sd: StateDict, prefix: str, ch: int, nbt: bool) -> None:
        sd[prefix + '.weight'] = self.uniform(0.5, 1.5, ch)
        sd[prefix + '.bias'] = self.normal(ch, std=0.05)
        sd[prefix + '.running_mean'] = self.normal(ch, std=0.05)
        sd[prefix + '.running_var'] = self.uniform(0.5, 1.5, ch)
        if nbt:
            sd[prefix + '.num_batches_tracked'] = torch.tensor(
                12345, dtype=torch.long
            )


def _stages(bottleneck: bool, blocks: Sequence[int]) -> List[dict]:
    """Standard widths: per stage {'out': C, 'blocks': [(c1, c2), ...]}."""
    exp = 4 if bottleneck else 1
    return [
        dict(out=64 * 2**s * exp, blocks=[(64 * 2**s,) * 2] * n)
        for s, n in enumerate(blocks)
    ]


def _build(
    g: _Gen,
    *,
    stem: Tuple[int, ...],
    stages: List[dict],
    bottleneck: bool,
    ks: Sequence[int],
    avg_down: bool,
    eca_name: str,
    nbt: bool,
    fc: bool,
    in_ch: int = 3,
) -> StateDict:
    sd: StateDict = {}
    if len(stem) == 1:
        sd['conv1.weight'] = g.conv(stem[0], in_ch, 7)
        g.bn(sd, 'bn1', stem[0], nbt)
    else:  # timm deep stem: conv1.{0,3,6} convs, conv1.{1,4} + bn1 norms
        c = in_ch
        for i, (w, bn) in enumerate(zip(stem, ('conv1.1', 'conv1.4', 'bn1'))):
            sd[f'conv1.{3 * i}.weight'] = g.conv(w, c, 3)
            g.bn(sd, bn, w, nbt)
            c = w
    c = stem[-1]
    for s, (stage, k) in enumerate(zip(stages, ks), start=1):
        out = stage['out']
        for b, (c1, c2) in enumerate(stage['blocks']):
            p = f'layer{s}.{b}.'
            if bottleneck:
                sd[p + 'conv1.weight'] = g.conv(c1, c, 1)
                g.bn(sd, p + 'bn1', c1, nbt)
                sd[p + 'conv2.weight'] = g.conv(c2, c1, 3)
                g.bn(sd, p + 'bn2', c2, nbt)
                sd[p + 'conv3.weight'] = g.conv(out, c2, 1, gain=0.3)
                g.bn(sd, p + 'bn3', out, nbt)
            else:
                sd[p + 'conv1.weight'] = g.conv(c1, c, 3)
                g.bn(sd, p + 'bn1', c1, nbt)
                sd[p + 'conv2.weight'] = g.conv(out, c1, 3, gain=0.3)
                g.bn(sd, p + 'bn2', out, nbt)
            sd[p + f'{eca_name}.conv.weight'] = g.normal(1, 1, k, std=0.5)
            if b == 0 and (s > 1 or c != out):
                i = 1 if avg_down else 0
                sd[p + f'downsample.{i}.weight'] = g.conv(out, c, 1, gain=1.0)
                g.bn(sd, p + f'downsample.{i + 1}', out, nbt)
            c = out
    if fc:
        sd['fc.weight'] = g.normal(1000, c, std=0.01)
        sd['fc.bias'] = torch.zeros(1000, dtype=g.dtype)
    return sd


def official_state_dict(
    depth: int,
    ks: Sequence[int],
    *,
    seed: int = 0,
    nbt: bool = True,
    fc: bool = True,
    dtype: torch.dtype = torch.float64,
) -> StateDict:
    """Random official-ECANet ``eca_resnet{depth}`` weights (no ``module.``)."""
    bottleneck, blocks = OFFICIAL_DEPTHS[depth]
    return _build(
        _Gen(seed, dtype),
        stem=(64,),
        stages=_stages(bottleneck, blocks),
        bottleneck=bottleneck,
        ks=ks,
        avg_down=False,
        eca_name='eca',
        nbt=nbt,
        fc=fc,
    )


def pruned_spec(arch: str) -> Tuple[Tuple[int, ...], List[dict]]:
    """(stem widths, stages) of a pruned timm arch, from the JSON data file."""
    spec = json.loads(PRUNED_JSON.read_text())[arch]
    stages = [
        dict(out=st['out'], blocks=[tuple(b) for b in st['blocks']])
        for st in spec['stages']
    ]
    return tuple(spec['stem']), stages


def timm_state_dict(
    arch: str,
    ks: Sequence[int] = TIMM_K,
    *,
    seed: int = 0,
    nbt: bool = True,
    fc: bool = True,
    dtype: torch.dtype = torch.float64,
    blocks: Optional[Sequence[int]] = None,
    stem: Optional[Tuple[int, ...]] = None,
) -> StateDict:
    """Random timm ``arch`` weights (``blocks``/``stem`` override the arch's,
    for nets that are no timm arch)."""
    if TIMM_ARCHS[arch] is None:
        stem_, stages = pruned_spec(arch)
    else:
        blocks_, stem_ = TIMM_ARCHS[arch]
        stages = _stages(True, blocks or blocks_)
    stem = stem or stem_
    return _build(
        _Gen(seed, dtype),
        stem=stem,
        stages=stages,
        bottleneck=True,
        ks=ks,
        avg_down=True,
        eca_name='se',
        nbt=nbt,
        fc=fc,
    )


# ----------------------------------------------------------------- forward
def _bn(x: Tensor, sd: StateDict, p: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[p + '.running_mean'],
        sd[p + '.running_var'],
        sd[p + '.weight'],
        sd[p + '.bias'],
        training=False,
        eps=1e-5,
    )


def _conv(x: Tensor, w: Tensor, stride: int = 1) -> Tensor:
    return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2)


def eca_reference(x: Tensor, w: Tensor) -> Tensor:
    """ECA as the paper writes it: ``x`` scaled by the sigmoid of the 1-D
    conv (weight ``w``) across its channel means."""
    n, c = x.shape[:2]
    y = F.conv1d(
        x.mean(dim=(2, 3)).reshape(n, 1, c), w, padding=w.shape[-1] // 2
    )
    return x * torch.sigmoid(y).reshape(n, c, 1, 1)


def _shortcut(x: Tensor, sd: StateDict, p: str, stride: int) -> Tensor:
    if (
        p + 'downsample.1.weight' in sd
        and sd[p + 'downsample.1.weight'].dim() == 4
    ):
        if stride > 1:  # avg-down: pool, then stride-1 1x1 conv
            x = F.avg_pool2d(
                x, stride, stride, ceil_mode=True, count_include_pad=False
            )
        return _bn(
            _conv(x, sd[p + 'downsample.1.weight']), sd, p + 'downsample.2'
        )
    if p + 'downsample.0.weight' in sd:
        return _bn(
            _conv(x, sd[p + 'downsample.0.weight'], stride),
            sd,
            p + 'downsample.1',
        )
    return x


def reference_stages(
    state_dict: StateDict, x: Tensor, layout: str
) -> List[Tensor]:
    """Outputs of layer1..layer4 of the source network in eval mode.

    Args:
        state_dict: Source weights, official (``eca``) or timm (``se``) layout;
            ``module.`` prefixes are ignored. Cast to ``x``'s dtype.
        x: Input batch (N, C, H, W).
        layout: ``'official'`` or ``'timm'``.
    """
    eca = {'official': 'eca', 'timm': 'se'}[layout]
    sd = {
        k[7:] if k.startswith('module.') else k: v.to(x.dtype)
        if v.is_floating_point()
        else v
        for k, v in state_dict.items()
    }
    if 'conv1.0.weight' in sd:  # deep stem
        x = F.relu(_bn(_conv(x, sd['conv1.0.weight'], 2), sd, 'conv1.1'))
        x = F.relu(_bn(_conv(x, sd['conv1.3.weight']), sd, 'conv1.4'))
        x = F.relu(_bn(_conv(x, sd['conv1.6.weight']), sd, 'bn1'))
    else:
        x = F.relu(_bn(_conv(x, sd['conv1.weight'], 2), sd, 'bn1'))
    x = F.max_pool2d(x, 3, 2, 1)
    outs = []
    for s in range(1, 5):
        b = 0
        while f'layer{s}.{b}.conv1.weight' in sd:
            p = f'layer{s}.{b}.'
            stride = 2 if s > 1 and b == 0 else 1
            if p + 'conv3.weight' in sd:  # Bottleneck: stride on the 3x3 conv2
                y = F.relu(
                    _bn(_conv(x, sd[p + 'conv1.weight']), sd, p + 'bn1')
                )
                y = F.relu(
                    _bn(
                        _conv(y, sd[p + 'conv2.weight'], stride), sd, p + 'bn2'
                    )
                )
                y = _bn(_conv(y, sd[p + 'conv3.weight']), sd, p + 'bn3')
            else:  # BasicBlock: stride on the first 3x3 conv
                y = F.relu(
                    _bn(
                        _conv(x, sd[p + 'conv1.weight'], stride), sd, p + 'bn1'
                    )
                )
                y = _bn(_conv(y, sd[p + 'conv2.weight']), sd, p + 'bn2')
            y = eca_reference(y, sd[p + f'{eca}.conv.weight'])
            x = F.relu(y + _shortcut(x, sd, p, stride))
            b += 1
        outs.append(x)
    return outs


def randomize_batch_norms(model: torch.nn.Module) -> torch.nn.Module:
    """Give every BatchNorm2d of ``model`` non-trivial running statistics
    and affine parameters (in place, from torch's global generator), so
    that a frozen-BN path has something to fold."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def rel_err(out: Tensor, ref: Tensor) -> float:
    """max |out - ref| / max |ref|."""
    return float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-300))


def num_params(sd: StateDict) -> int:
    return sum(v.numel() for v in sd.values() if v.is_floating_point())
