"""Layout-independent part of the converters: the error type, and reading the
network structure (stem, blocks, widths, ECA kernels) off a state dict that
already uses ECAResNet's (mmdet ResNet's) key names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from ..engine.errors import EcaMmdetError

StateDict = Dict[str, Tensor]

BN_PARAMS = ('weight', 'bias', 'running_mean', 'running_var')
# (bottleneck?, blocks per stage) -> ECAResNet depth
DEPTHS: Dict[Tuple[bool, Tuple[int, ...]], int] = {
    (False, (2, 2, 2, 2)): 18,
    (False, (3, 4, 6, 3)): 34,
    (True, (2, 2, 2, 2)): 26,
    (True, (3, 4, 6, 3)): 50,
    (True, (3, 4, 23, 3)): 101,
    (True, (3, 8, 36, 3)): 152,
    (True, (3, 24, 36, 3)): 200,
    (True, (3, 30, 48, 8)): 269,
}
_BLOCK_KEY = re.compile(r'^layer(\d+)\.(\d+)\.')


class ConversionError(EcaMmdetError, ValueError):
    """The source cannot be converted (unreadable, or it fits no layout the
    converters know), or the output path is unusable."""


@dataclass
class Structure:
    """What a converted state dict says about the network that produced it."""

    bottleneck: bool
    stage_blocks: Tuple[int, ...]
    deep_stem: bool
    stem_widths: Tuple[int, ...]  # plain: (out,); deep: (mid1, mid2, out)
    in_channels: int
    avg_down: bool
    eca_k_size: Tuple[int, ...]
    stage_out: Tuple[int, ...]
    # per stage, per block: (conv1 out, conv2 out)
    block_widths: Tuple[Tuple[Tuple[int, int], ...], ...]

    @property
    def base_channels(self) -> int:
        return self.block_widths[0][0][1]

    @property
    def standard_widths(self) -> bool:
        """Widths follow mmdet's ResNet rule (planes = base * 2**stage)."""
        exp = 4 if self.bottleneck else 1
        for s, blocks in enumerate(self.block_widths):
            planes = self.base_channels * 2**s
            if self.stage_out[s] != planes * exp or any(
                w != (planes, planes) for w in blocks
            ):
                return False
        return True


class _Reader:
    """Checks keys/shapes of one state dict and records which keys it used."""

    def __init__(self, sd: StateDict, src: str, names: Dict[str, str]) -> None:
        self.sd, self.src, self.names, self.used = sd, src, names, set()

    def fail(self, why: str) -> ConversionError:
        return ConversionError(f'{self.src}: {why}')

    def has(self, key: str) -> bool:
        return key in self.sd

    def conv(self, prefix: str, in_ch: int, kernel: int) -> int:
        """Use ``prefix.weight`` (a bias-free conv), return its out channels."""
        key = prefix + '.weight'
        w = self.sd.get(key)
        if w is None:
            raise self.fail(f'missing {self.names.get(key, key)!r}')
        if (
            w.dim() != 4
            or w.shape[1] != in_ch
            or tuple(w.shape[2:]) != (kernel, kernel)
        ):
            raise self.fail(
                f'{self.names.get(key, key)!r} has shape {tuple(w.shape)}, expected '
                f'[*, {in_ch}, {kernel}, {kernel}]'
            )
        self.used.add(key)
        return int(w.shape[0])

    def bn(self, prefix: str, ch: int) -> None:
        for p in BN_PARAMS:
            key = f'{prefix}.{p}'
            t = self.sd.get(key)
            if t is None:
                raise self.fail(f'missing {self.names.get(key, key)!r}')
            if tuple(t.shape) != (ch,):
                raise self.fail(
                    f'{self.names.get(key, key)!r} has shape {tuple(t.shape)}, '
                    f'expected [{ch}]'
                )
            self.used.add(key)
        if prefix + '.num_batches_tracked' in self.sd:
            self.used.add(prefix + '.num_batches_tracked')

    def eca(self, prefix: str) -> int:
        key = prefix + '.eca.conv.weight'
        w = self.sd.get(key)
        if w is None:
            raise self.fail(f'missing {self.names.get(key, key)!r}')
        if w.dim() != 3 or tuple(w.shape[:2]) != (1, 1) or w.shape[2] % 2 == 0:
            raise self.fail(
                f'{self.names.get(key, key)!r} has shape {tuple(w.shape)}, '
                'expected [1, 1, odd k]'
            )
        self.used.add(key)
        return int(w.shape[2])


def read_structure(
    sd: StateDict, src: str, names: Optional[Dict[str, str]] = None
) -> Structure:
    """Infer the network from ``sd`` (ECAResNet key names), checking that every
    key is used and every shape chains up.

    Args:
        sd: State dict with ECAResNet key names (classifier already dropped).
        src: Source file name, for error messages.
        names: Converted key -> source key, to name source keys in errors.

    Raises:
        ConversionError: On missing/unexpected keys or inconsistent shapes.
    """
    names = names or {}
    r = _Reader(sd, src, names)
    stages = sorted({int(m.group(1)) for m in map(_BLOCK_KEY.match, sd) if m})
    if stages != [1, 2, 3, 4]:
        found = ', '.join(f'layer{s}' for s in stages) or 'none'
        raise r.fail(
            f'expected residual stages layer1..layer4, found: {found}'
        )
    # stem
    deep = r.has('stem.0.weight')
    stem_w = sd.get('stem.0.weight' if deep else 'conv1.weight')
    if stem_w is None or stem_w.dim() != 4:
        raise r.fail(
            'no stem found (expected conv1.weight, or a deep stem conv1.0/3/6)'
        )
    in_ch = int(stem_w.shape[1])
    if deep:
        widths, c = [], in_ch
        for conv, bn in ((0, 1), (3, 4), (6, 7)):
            c = r.conv(f'stem.{conv}', c, 3)
            r.bn(f'stem.{bn}', c)
            widths.append(c)
    else:
        c = r.conv('conv1', in_ch, 7)
        r.bn('bn1', c)
        widths = [c]
    # residual stages
    block_ids: Dict[int, List[int]] = {}
    for m in filter(None, map(_BLOCK_KEY.match, sd)):
        block_ids.setdefault(int(m.group(1)), []).append(int(m.group(2)))
    bottleneck = r.has('layer1.0.conv3.weight')
    blocks_per_stage, ks, outs, all_widths, avg_downs = [], [], [], [], set()
    for s in range(1, 5):
        n = 1 + max(block_ids[s])
        stage_k, stage_w, out = set(), [], None
        for b in range(n):
            p = f'layer{s}.{b}'
            stride = 2 if s > 1 and b == 0 else 1
            if bottleneck:
                c1 = r.conv(p + '.conv1', c, 1)
                r.bn(p + '.bn1', c1)
                c2 = r.conv(p + '.conv2', c1, 3)
                r.bn(p + '.bn2', c2)
                c3 = r.conv(p + '.conv3', c2, 1)
                r.bn(p + '.bn3', c3)
            else:
                c1 = r.conv(p + '.conv1', c, 3)
                r.bn(p + '.bn1', c1)
                c2 = c3 = r.conv(p + '.conv2', c1, 3)
                r.bn(p + '.bn2', c2)
            out = c3 if out is None else out
            if c3 != out:
                raise r.fail(f'{p} outputs {c3} channels, the stage {out}')
            needs_ds = b == 0 and (stride != 1 or c != out)
            if (
                r.has(p + '.downsample.1.weight')
                and sd[p + '.downsample.1.weight'].dim() == 4
            ):
                avg_downs.add(True)
                r.conv(p + '.downsample.1', c, 1)
                r.bn(p + '.downsample.2', out)
                has_ds = True
            elif r.has(p + '.downsample.0.weight'):
                avg_downs.add(False)
                r.conv(p + '.downsample.0', c, 1)
                r.bn(p + '.downsample.1', out)
                has_ds = True
            else:
                has_ds = False
            if has_ds != needs_ds:
                raise r.fail(
                    f'{p} {"has" if has_ds else "lacks"} a downsample shortcut, '
                    'which ResNet does not build there'
                )
            stage_k.add(r.eca(p))
            stage_w.append((c1, c2))
            c = out
        if len(stage_k) != 1:
            raise r.fail(
                f'layer{s} mixes ECA kernel sizes {sorted(stage_k)}; '
                'ECAResNet takes one kernel size per stage'
            )
        blocks_per_stage.append(n)
        ks.append(stage_k.pop())
        outs.append(out)
        all_widths.append(tuple(stage_w))
    if len(avg_downs) != 1:
        raise r.fail('downsample shortcuts mix stride-conv and avg-pool forms')
    unused = [k for k in sd if k not in r.used]
    if unused:
        shown = ', '.join(repr(names.get(k, k)) for k in unused[:5])
        more = f' (+{len(unused) - 5} more)' if len(unused) > 5 else ''
        raise r.fail(f'unrecognised keys: {shown}{more}')
    return Structure(
        bottleneck=bottleneck,
        stage_blocks=tuple(blocks_per_stage),
        deep_stem=deep,
        stem_widths=tuple(widths),
        in_channels=in_ch,
        avg_down=avg_downs.pop(),
        eca_k_size=tuple(ks),
        stage_out=tuple(outs),
        block_widths=tuple(all_widths),
    )


def generic_cfg(st: Structure, src: str) -> dict:
    """ECAResNet kwargs rebuilding ``st`` without an arch preset.

    Raises:
        ConversionError: When the widths are not mmdet's standard ones.
    """
    if not st.standard_widths:
        raise ConversionError(
            f'{src}: block widths are neither standard ResNet widths nor '
            'those of a known pruned arch'
        )
    depth = DEPTHS.get((st.bottleneck, st.stage_blocks))
    cfg: dict = dict(type='ECAResNet')
    if depth is None:  # same block type, other block counts
        cfg.update(
            depth=50 if st.bottleneck else 18, stage_blocks=st.stage_blocks
        )
    else:
        cfg.update(depth=depth)
    if st.in_channels != 3:
        cfg['in_channels'] = st.in_channels
    stem_out = st.stem_widths[-1]
    if st.base_channels != 64:
        cfg['base_channels'] = st.base_channels
    if stem_out != st.base_channels:
        cfg['stem_channels'] = stem_out
    if st.deep_stem:
        cfg['deep_stem'] = True
        if st.stem_widths[:2] != (stem_out // 2, stem_out // 2):
            cfg['stem_mid_channels'] = st.stem_widths[:2]
    if st.avg_down:
        cfg['avg_down'] = True
    cfg['eca_k_size'] = st.eca_k_size
    return cfg
