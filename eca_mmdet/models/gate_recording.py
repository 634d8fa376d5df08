"""Recording the gates of a model's ECA layers: :func:`record_gates`.

::

    with record_gates(model.backbone) as rec:
        model.backbone(images)
    rec.gates()  # {'layer1.0': (N, C) float32 tensor, ...}

Only the layers of ``model`` record, only while the ``with`` block runs;
outside it a layer's forward is unchanged (one ``is not None`` check).
"""

import contextlib
import re
from typing import Dict, Iterator, List

import torch
from torch import Tensor, nn

from .eca import ECALayer

__all__ = [
    'GateRecorder',
    'NoEcaLayersError',
    'block_name',
    'eca_layers',
    'record_gates',
    'stage_of',
]


class NoEcaLayersError(ValueError):
    """The model has no ECA layer to record."""


def block_name(layer_name: str) -> str:
    """The name a gate is filed under: the layer's module name without a
    trailing ``.eca`` (the block, e.g. ``layer1.0``)."""
    return layer_name[:-4] if layer_name.endswith('.eca') else layer_name


def stage_of(name: str) -> str:
    """``'stage2'`` for ``layer2.1`` (mmdet ResNet names), else ``'other'``."""
    found = re.search(r'(?:^|\.)layer(\d+)\.', name)
    return f'stage{found.group(1)}' if found else 'other'


def eca_layers(model: nn.Module) -> Dict[str, ECALayer]:
    """``{block name: layer}`` of the ECA layers of ``model``, in module
    order."""
    return {
        block_name(name): m
        for name, m in model.named_modules()
        if isinstance(m, ECALayer)
    }


class GateRecorder:
    """The gates recorded by :func:`record_gates`, per block, in the order
    computed (one (N, C) row block per forward of the layer)."""

    def __init__(self, layers: Dict[str, ECALayer]) -> None:
        self.names: List[str] = list(layers)
        self._name_of = {id(m): n for n, m in layers.items()}
        self._rows: Dict[str, List[Tensor]] = {n: [] for n in self.names}

    def __call__(self, layer: ECALayer, gate: Tensor) -> None:
        rows = gate.detach().flatten(1).float().cpu()
        self._rows[self._name_of[id(layer)]].append(rows)

    def gates(self) -> Dict[str, Tensor]:
        """``{block: (rows, C)}`` of everything recorded so far (blocks that
        never ran are left out)."""
        return {n: torch.cat(r) for n, r in self._rows.items() if r}

    def take(self) -> Dict[str, Tensor]:
        """:meth:`gates`, then forget them (e.g. once per batch)."""
        out = self.gates()
        for rows in self._rows.values():
            rows.clear()
        return out


@contextlib.contextmanager
def record_gates(model: nn.Module) -> Iterator[GateRecorder]:
    """Record the gate (sigmoid output, per channel) of every ECA layer of
    ``model`` computed inside the ``with`` block, whichever path computes
    it (fused or the paper's form, frozen-BN folding, graph capture).

    Raises:
        NoEcaLayersError: ``model`` has no :class:`ECALayer`.
    """
    layers = eca_layers(model)
    if not layers:
        raise NoEcaLayersError(
            f'{type(model).__name__} has no ECA layers (ECALayer modules) '
            'to record'
        )
    recorder = GateRecorder(layers)
    previous = {
        name: layer.__dict__.get('gate_sink') for name, layer in layers.items()
    }
    for layer in layers.values():
        layer.gate_sink = recorder
    try:
        yield recorder
    finally:
        for name, layer in layers.items():
            if previous[name] is None:
                layer.__dict__.pop('gate_sink', None)
            else:
                layer.gate_sink = previous[name]
