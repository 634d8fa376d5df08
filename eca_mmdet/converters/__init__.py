"""Convert ECA-ResNet ImageNet checkpoints to ECAResNet (mmdet) state dicts.

Two source layouts are recognised from the keys:

* ``official``: the ECANet authors' ``eca_resnet*.pth.tar`` (see
  :mod:`eca_mmdet.converters.official`);
* ``timm``: timm's ``ecaresnet*`` weights, ``.pth`` or ``.safetensors`` (see
  :mod:`eca_mmdet.converters.timm`).

The network (depth, block type, stem, avg-down shortcuts, pruned widths, ECA
kernel per stage) is read off the tensor shapes, every key must be accounted
for, and the classifier ``fc.*`` is dropped.  Example::

    from eca_mmdet.converters import convert_checkpoint
    cfg = convert_checkpoint('eca_resnet50_k3557.pth.tar', 'eca_r50_mmdet.pth')
    # {'type': 'ECAResNet', 'depth': 50, 'eca_k_size': (3, 5, 5, 7)}
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Dict, Union

import torch

from ..engine.atomic_io import atomic_writer
from ..engine.checkpoint import (
    CheckpointLoadError,
    safe_torch_load,
    strip_prefix,
)
from ..engine.paths import refuse_overwriting_inputs
from . import official, timm
from .common import ConversionError, StateDict, Structure, read_structure

__all__ = [
    'ConversionError',
    'Structure',
    'check_output_path',
    'convert_checkpoint',
    'convert_file',
    'convert_state_dict',
    'load_source',
]

PathLike = Union[str, 'os.PathLike[str]']
LAYOUTS = (official, timm)


def _is_safetensors(path: Path) -> bool:
    if path.suffix == '.safetensors':
        return True
    with open(path, 'rb') as f:
        head = f.read(9)
    # safetensors: little-endian u64 header length, then the JSON header
    return (
        len(head) == 9
        and head[8:9] == b'{'
        and struct.unpack('<Q', head[:8])[0] < 1 << 30
    )


def _unwrap(obj: Any, src: str) -> StateDict:
    """The tensor dict inside a checkpoint, ``module.`` prefixes removed."""
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ConversionError(
            f'{src}: no state dict found (got {type(obj).__name__})'
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(
            f'{src}: not a state dict of tensors (e.g. key {bad[0]!r})'
        )
    return strip_prefix(obj, 'module.', keep_others=True)


def load_source(src_path: PathLike) -> StateDict:
    """Read a ``.pth``/``.pth.tar`` (weights-only, with the allow-list of
    :func:`eca_mmdet.engine.checkpoint.safe_torch_load`) or ``.safetensors``
    file and return its flat state dict.

    Raises:
        FileNotFoundError: ``src_path`` does not exist.
        ConversionError: The file is not a readable checkpoint of tensors
            (empty, text, truncated, or a pickle needing other globals,
            which is refused without running anything).
    """
    path = Path(src_path)
    if not path.is_file():
        raise FileNotFoundError(f'{src_path}: no such file')
    if _is_safetensors(path):
        try:  # optional: not part of a stock MMDetection environment
            from safetensors.torch import load_file
        except ImportError:
            raise ConversionError(
                f'{src_path}: reading a .safetensors file needs the '
                'safetensors package, which is not installed: '
                'pip install safetensors'
            ) from None
        if path.stat().st_size == 0:
            raise ConversionError(
                f'{src_path}: the file is empty (0 bytes): the save or '
                'download did not complete'
            )
        try:
            obj = load_file(str(path), device='cpu')
        except Exception as e:  # header / size errors: not a safetensors file
            first = (str(e).strip().splitlines() or [''])[0][:200]
            raise ConversionError(
                f'{src_path}: not a readable safetensors file '
                f'({type(e).__name__}: {first})'
            ) from None
    else:
        try:
            obj = safe_torch_load(path, map_location='cpu')
        except CheckpointLoadError as e:  # its message names the file
            raise ConversionError(str(e)) from None
    return _unwrap(obj, str(src_path))


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself if it owns exactly its storage, else a compact copy (so
    torch.save does not write storage shared with dropped tensors)."""
    t = t.detach()
    if (
        t.is_contiguous()
        and t.storage_offset() == 0
        and t.untyped_storage().nbytes() == t.numel() * t.element_size()
    ):
        return t
    return t.clone(memory_format=torch.contiguous_format)


def convert_state_dict(
    sd: StateDict, src: str = '<state dict>'
) -> Dict[str, Any]:
    """Convert a flat source state dict.

    Returns:
        ``dict(state_dict=..., layout=..., arch=..., backbone=cfg,
        structure=Structure, dropped=[keys])``.

    Raises:
        ConversionError: ``sd`` fits no known layout.
    """
    keys = list(sd)
    found = [m for m in LAYOUTS if m.matches(keys)]
    if len(found) != 1:
        why = (
            'both official (eca.conv) and timm (se.conv) ECA keys'
            if found
            else 'no ECA weights (layerX.Y.eca.conv.weight or layerX.Y.se.conv.weight)'
        )
        shown = ', '.join(repr(k) for k in keys[:5])
        raise ConversionError(
            f'{src}: not an ECA-ResNet checkpoint: {why}; first keys: {shown}'
        )
    layout = found[0]
    out, names, dropped = layout.rename(sd)
    st = read_structure(out, src, names)
    cfg, arch = layout.backbone_cfg(st, src)
    out = {k: _own_storage(v) for k, v in out.items()}
    return dict(
        state_dict=out,
        layout=layout.LAYOUT,
        arch=arch,
        backbone=cfg,
        structure=st,
        dropped=dropped,
    )


def check_output_path(src_path: PathLike, dst_path: PathLike) -> None:
    """Refuse an output that is a directory or the source itself (also
    through another path or a link), before anything is read or written:
    the tools' one output guard,
    :func:`~eca_mmdet.engine.paths.refuse_overwriting_inputs`.

    Raises:
        OutputPathError: naming the output and what is wrong with it.
    """
    refuse_overwriting_inputs(
        {'output': dst_path}, {'source checkpoint': src_path}
    )


def convert_file(src_path: PathLike, dst_path: PathLike) -> Dict[str, Any]:
    """Like :func:`convert_checkpoint`, but return the saved ``meta`` dict
    (``source``, ``layout``, ``arch``, ``backbone``, ``dropped_keys``,
    ``converter``)."""
    check_output_path(src_path, dst_path)
    res = convert_state_dict(load_source(src_path), str(src_path))
    meta = dict(
        source=os.path.basename(str(src_path)),
        layout=res['layout'],
        arch=res['arch'],
        backbone=dict(res['backbone']),
        dropped_keys=res['dropped'],
        converter='eca_mmdet.converters',
    )
    with atomic_writer(dst_path) as f:  # never a half-written output
        torch.save(dict(state_dict=res['state_dict'], meta=meta), f)
    return meta


def convert_checkpoint(src_path: PathLike, dst_path: PathLike) -> dict:
    """Convert ``src_path`` (official ``.pth.tar`` or timm ``.pth`` /
    ``.safetensors``) to an ECAResNet checkpoint at ``dst_path``.

    The output is ``{'state_dict': ..., 'meta': {'source', 'layout', 'arch',
    'backbone', 'dropped_keys', 'converter'}}``, loadable with
    ``init_cfg=dict(type='Pretrained', checkpoint=dst_path)``.

    Returns:
        The backbone config, e.g. ``dict(type='ECAResNet', depth=50,
        eca_k_size=(3, 5, 5, 7))`` or ``dict(type='ECAResNet',
        arch='ecaresnet50d', eca_k_size=(5, 5, 5, 7))``.

    Raises:
        FileNotFoundError: ``src_path`` does not exist.
        ConversionError: The source fits no known layout (the message names
            the file and the reason, e.g. the first unrecognised keys).
        OutputPathError: ``dst_path`` is a directory or the source file
            itself.
    """
    return dict(convert_file(src_path, dst_path)['backbone'])
