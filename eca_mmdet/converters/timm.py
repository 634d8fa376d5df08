"""timm ECA-ResNet state dicts (``.pth`` or ``.safetensors``).

Keys: ECA at ``layerX.Y.se.conv.weight``; plain stem ``conv1``/``bn1``, or a
deep stem ``conv1.0/1/3/4/6`` whose last BN is ``bn1``; avg-down shortcuts
``downsample.1`` (conv) / ``downsample.2`` (BN) — the same indices as
ECAResNet's; classifier ``fc.*`` (dropped).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ..models.presets import ARCH_PRESETS, arch_layout, load_pruned_archs
from .common import StateDict, Structure, generic_cfg

LAYOUT = 'timm'
# arch -> (blocks per stage, stem widths (plain: (out,), deep: (mid1, mid2,
# out))), from the backbone's presets. All: Bottleneck, avg_down, base width
# 64; pruned archs are identified by their widths (pruned_widths.json).
ARCHS: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    arch: arch_layout(arch)
    for arch, preset in ARCH_PRESETS.items()
    if not preset.get('pruned')
}
_STEM = {
    'conv1.0.': 'stem.0.',
    'conv1.1.': 'stem.1.',
    'conv1.3.': 'stem.3.',
    'conv1.4.': 'stem.4.',
    'conv1.6.': 'stem.6.',
}


def matches(keys: List[str]) -> bool:
    """True for timm's layout (ECA modules named ``se``)."""
    return any(k.endswith('.se.conv.weight') for k in keys)


def _rename_key(k: str, deep: bool) -> str:
    for old, new in _STEM.items():
        if k.startswith(old):
            return new + k[len(old) :]
    if deep and k.startswith('bn1.'):
        return 'stem.7.' + k[4:]
    return k.replace('.se.conv.', '.eca.conv.')


def rename(sd: StateDict) -> Tuple[StateDict, Dict[str, str], List[str]]:
    """Map to ECAResNet keys.

    Returns:
        (converted state dict, converted key -> source key, dropped keys).
    """
    deep = 'conv1.0.weight' in sd
    out: StateDict = {}
    names: Dict[str, str] = {}
    dropped = []
    for k, v in sd.items():
        if k.startswith('fc.'):
            dropped.append(k)
            continue
        new = _rename_key(k, deep)
        out[new] = v
        names[new] = k
    return out, names, dropped


def identify_arch(st: Structure) -> Optional[str]:
    """The timm arch whose structure is ``st`` (ECA kernel sizes aside)."""
    if not (st.bottleneck and st.avg_down and st.in_channels == 3):
        return None
    if st.standard_widths and st.base_channels == 64:
        for arch, (blocks, stem) in ARCHS.items():
            if (st.stage_blocks, st.stem_widths, st.deep_stem) == (
                blocks,
                stem,
                len(stem) == 3,
            ):
                return arch
        return None
    for arch, spec in load_pruned_archs().items():
        widths = tuple(
            tuple(tuple(w) for w in stage['blocks'])
            for stage in spec['stages']
        )
        if (
            st.deep_stem
            and st.stem_widths == tuple(spec['stem'])
            and st.block_widths == widths
            and st.stage_out == tuple(stage['out'] for stage in spec['stages'])
        ):
            return arch
    return None


def backbone_cfg(st: Structure, src: str) -> Tuple[dict, Optional[str]]:
    """``dict(type='ECAResNet', arch=..., eca_k_size=...)`` for a known timm
    arch, else the generic (depth-based) config; also the arch name or None."""
    arch = identify_arch(st)
    if arch is None:
        return generic_cfg(st, src), None
    return dict(type='ECAResNet', arch=arch, eca_k_size=st.eca_k_size), arch
