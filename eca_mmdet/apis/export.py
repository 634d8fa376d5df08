"""ONNX export of a detector's tensor outputs (mmdet's ``mode='tensor'``)
or of its backbone, checked in onnxruntime against PyTorch.

The graph takes the batch as mmdet's data preprocessor leaves it (normalised,
channel order converted, padded to ``pad_size_divisor``) and returns the raw
head outputs, with dynamic batch, height and width. A two-stage detector's
tensor mode goes on after the RPN with proposal NMS and RoIAlign from mmcv's
compiled ops, which have no ONNX form without mmdeploy: for those the graph
ends at the RPN (FPN features and RPN maps, ``part='dense'``).
``tools/export_onnx.py`` is the command line.
"""

import argparse
import inspect
import os
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..engine import EcaMmdetError, refuse_overwriting_inputs
from ..engine.checkpoint import load_fitting_checkpoint
from ..engine.errors import first_line
from .common import CfgOptionsAction, CliArgumentParser, load_config, run_cli

__all__ = [
    'ExportError',
    'OnnxCheck',
    'TensorModel',
    'build_export_model',
    'build_parser',
    'check_onnxruntime',
    'export_onnx',
    'main',
    'require_onnx',
]

INPUT_NAME = 'inputs'
TOLERANCE = 1e-4
INSTALL_HINT = (
    'install the extra: pip install "eca-mmdet[onnx]" (or: pip '
    'install onnx onnxruntime)'
)
PARTS = ('tensor', 'dense', 'backbone')


class ExportError(EcaMmdetError):
    """The model cannot be exported or checked as asked."""


class OnnxCheck(NamedTuple):
    """One output compared between onnxruntime and PyTorch."""

    name: str
    shape: Tuple[int, ...]
    max_abs: float
    rel: float  # max |onnxruntime - torch| / max |torch|


def require_onnx():
    """``(onnx, onnxruntime)``, or :class:`ExportError` saying how to
    install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ExportError(
            f'{e.name or "onnx"} is not installed: {INSTALL_HINT}'
        ) from None
    return onnx, onnxruntime


class TensorModel(nn.Module):
    """A detector's exportable part, returning a flat tuple of tensors.

    Args:
        detector (nn.Module): An mmdet detector, in eval mode.
        part (str): ``'tensor'``: ``detector(inputs, mode='tensor')``;
            ``'dense'``: ``extract_feat`` and the RPN head's maps (two-stage
            detectors); ``'backbone'``: the backbone's outputs.
    """

    def __init__(self, detector: nn.Module, part: str = 'tensor') -> None:
        super().__init__()
        if part not in PARTS:
            raise ValueError(f'part must be one of {PARTS}, got {part!r}')
        self.detector = detector
        self.part = part

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        return tuple(t for _, t in self.named_outputs(inputs))

    def named_outputs(self, inputs: Tensor) -> List[Tuple[str, Tensor]]:
        """:meth:`forward`'s outputs with their names (numbered by
        level)."""
        det = self.detector
        if self.part == 'backbone':
            outs = det.backbone(inputs)
            return [(f'backbone{i}', t) for i, t in enumerate(outs)]
        if self.part == 'dense':
            feats = det.extract_feat(inputs)
            cls, reg = det.rpn_head(feats)[:2]
            return (
                _level_names('feat', feats)
                + _level_names('rpn_cls_score', cls)
                + _level_names('rpn_bbox_pred', reg)
            )
        result = det(inputs, mode='tensor')
        if isinstance(result, Tensor):
            return [('output', result)]
        named = []
        for g, group in enumerate(result):
            prefix = ('cls_score', 'bbox_pred')[g] if g < 2 else f'out{g}_'
            named += _level_names(prefix, group)
        return named


def _level_names(prefix: str, tensors) -> List[Tuple[str, Tensor]]:
    if isinstance(tensors, Tensor):
        return [(prefix.rstrip('_'), tensors)]
    if not all(isinstance(t, Tensor) for t in tensors):
        raise ExportError(
            'the model returned something other than tensors '
            'or lists of tensors; export the backbone '
            '(--backbone-only) instead'
        )
    return [(f'{prefix}{i}', t) for i, t in enumerate(tensors)]


def default_part(detector: nn.Module) -> str:
    """``'dense'`` for detectors with an RPN and RoI head, else
    ``'tensor'``."""
    if getattr(detector, 'with_rpn', False) or getattr(
        detector, 'with_roi_head', False
    ):
        return 'dense'
    return 'tensor'


def build_export_model(
    config: str,
    checkpoint: Optional[str] = None,
    cfg_options: Optional[dict] = None,
    part: Optional[str] = None,
) -> TensorModel:
    """The detector of ``config`` (weights from ``checkpoint``, else as
    built: random, no pretrained loading) in eval mode, wrapped in
    :class:`TensorModel` (``part`` None: :func:`default_part`).

    Raises:
        ConfigError: the config is missing or does not load.
        CheckpointLoadError: the checkpoint is missing or unreadable.
        CheckpointMismatchError: its weights do not fit the model.
        ExportError: the model cannot be built.
    """
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    cfg = load_config(config, cfg_options)
    register_all_modules()
    try:
        detector = MODELS.build(cfg.model)
    except Exception as e:  # unknown types, bad arguments
        raise ExportError(
            f'cannot build the model of {config}: '
            f'{type(e).__name__}: {first_line(e)}'
        ) from None
    if checkpoint is not None:
        load_fitting_checkpoint(
            detector, checkpoint, f'the model of {config}', load=True
        )
    detector.eval()
    model = TensorModel(detector, part or default_part(detector))
    model.preprocessing = dict(cfg.model.get('data_preprocessor') or {})
    return model.eval()


# torch >= 2.5 has a second exporter (dynamo=...); ask for the TorchScript
# one there, the only one torch 2.1-2.4 has
_TORCHSCRIPT_EXPORTER = (
    {'dynamo': False}
    if 'dynamo' in inspect.signature(torch.onnx.export).parameters
    else {}
)


def export_onnx(
    model: nn.Module,
    out: str,
    shape: Tuple[int, int] = (320, 320),
    batch: int = 1,
    in_channels: int = 3,
    opset: int = 17,
) -> Dict[str, Tuple[int, ...]]:
    """Export ``model`` (one image batch in, a tuple of tensors out) with
    the TorchScript-based ``torch.onnx.export`` (batch, height and width
    dynamic, constants folded); returns each input and output name with its
    shape at the export size.

    Raises:
        ExportError: ``torch.onnx.export`` failed (its first line).
    """
    x = torch.randn(
        batch, in_channels, *shape, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        if hasattr(model, 'named_outputs'):
            names, outputs = zip(*model.named_outputs(x))
        else:
            outputs = model(x)
            outputs = (outputs,) if isinstance(outputs, Tensor) else outputs
            names = [f'output{i}' for i in range(len(outputs))]
    axes = {INPUT_NAME: {0: 'batch', 2: 'height', 3: 'width'}}
    for name, t in zip(names, outputs):
        axes[name] = {0: 'batch'}
        if t.dim() == 4:
            axes[name].update({2: f'{name}_height', 3: f'{name}_width'})
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (x,),
                out,
                input_names=[INPUT_NAME],
                output_names=list(names),
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
                **_TORCHSCRIPT_EXPORTER,
            )
    except Exception as e:  # unsupported ops in the model
        raise ExportError(
            f'torch.onnx.export failed: {type(e).__name__}: {first_line(e)}'
        ) from None
    shapes = {INPUT_NAME: tuple(x.shape)}
    shapes.update((n, tuple(t.shape)) for n, t in zip(names, outputs))
    return shapes


def check_onnxruntime(
    model: nn.Module,
    onnx_file: str,
    shape: Tuple[int, int],
    batch: int = 2,
    in_channels: int = 3,
    seed: int = 1,
) -> List[OnnxCheck]:
    """Run ``onnx_file`` in onnxruntime (CPU) and ``model`` in PyTorch on one
    random batch of ``shape``; per output: shape, max absolute difference and
    that over the largest PyTorch magnitude."""
    onnx, ort = require_onnx()
    onnx.checker.check_model(onnx_file)
    x = torch.randn(
        batch,
        in_channels,
        *shape,
        generator=torch.Generator().manual_seed(seed),
    )
    with torch.no_grad():
        expected = model(x)
    if isinstance(expected, Tensor):
        expected = (expected,)
    session = ort.InferenceSession(
        onnx_file, providers=['CPUExecutionProvider']
    )
    got = session.run(None, {INPUT_NAME: x.numpy()})
    checks = []
    for out, want, have in zip(session.get_outputs(), expected, got):
        have = torch.from_numpy(have)
        if have.shape != want.shape:
            raise ExportError(
                f'output {out.name}: onnxruntime gives shape '
                f'{tuple(have.shape)}, PyTorch '
                f'{tuple(want.shape)}'
            )
        diff = (have.double() - want.double()).abs().max().item()
        scale = want.double().abs().max().item()
        checks.append(
            OnnxCheck(
                out.name,
                tuple(want.shape),
                diff,
                diff / scale if scale else diff,
            )
        )
    return checks


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/export_onnx.py``."""
    parser = CliArgumentParser(
        prog='tools/export_onnx.py',
        description="Export a detector in mmdet's tensor mode (or its "
        'backbone) to ONNX, then compare onnxruntime with PyTorch on '
        'another input size.',
    )
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', nargs='?', help='weights (without: random weights)'
    )
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument(
        '--shape',
        nargs=2,
        type=int,
        default=[320, 320],
        metavar=('H', 'W'),
        help='input size to trace at '
        '(the graph takes any size); default 320 320',
    )
    parser.add_argument(
        '--check-shape',
        nargs=2,
        type=int,
        metavar=('H', 'W'),
        help='input size of the onnxruntime check; default H+32 W+96, batch 2',
    )
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='export the backbone alone',
    )
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=CfgOptionsAction,
        metavar='KEY=VALUE',
        help='override config entries, e.g. model.backbone.depth=101',
    )
    return parser


def _size(path: str) -> str:
    return f'{os.path.getsize(path) / 2**20:.1f} MB'


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tools/export_onnx.py``: 0 when exported and matching PyTorch within
    :data:`TOLERANCE`, else 1 after one ``error: ...`` line."""
    return run_cli(_run, build_parser(), argv)


def _run(args: argparse.Namespace) -> int:
    if any(s < 32 for s in args.shape + (args.check_shape or [])):
        raise ExportError('--shape and --check-shape must be at least 32')
    refuse_overwriting_inputs(
        {'--out': args.out},
        {'config': args.config, 'checkpoint': args.checkpoint},
    )
    require_onnx()
    model = build_export_model(
        args.config,
        args.checkpoint,
        args.cfg_options,
        'backbone' if args.backbone_only else None,
    )
    shapes = export_onnx(model, args.out, tuple(args.shape), opset=args.opset)
    weights = args.checkpoint or 'random weights (no checkpoint)'
    what = {
        'tensor': "mmdet's tensor mode",
        'backbone': 'the backbone',
        'dense': 'features and RPN maps (the RoI stage needs mmcv ops '
        'without an ONNX form: see README, Export to ONNX)',
    }[model.part]
    print(
        f'exported {what} of {args.config}, {weights}, to {args.out} '
        f'(opset {args.opset}, {_size(args.out)})'
    )
    pre = model.preprocessing
    print(
        f'input  {INPUT_NAME} {shapes[INPUT_NAME]}: batch, height and '
        f'width dynamic; preprocessed as mmdet does: mean '
        f'{pre.get("mean")}, std {pre.get("std")}, bgr_to_rgb '
        f'{pre.get("bgr_to_rgb", False)}, padded to a multiple of '
        f'{pre.get("pad_size_divisor", 1)}'
    )
    for name, shape in shapes.items():
        if name != INPUT_NAME:
            print(f'output {name} {shape}')
    h, w = args.check_shape or (args.shape[0] + 32, args.shape[1] + 96)
    checks = check_onnxruntime(model, args.out, (h, w))
    print(f'onnxruntime vs PyTorch on another input, (2, 3, {h}, {w}):')
    for c in checks:
        print(
            f'  {c.name} {c.shape}: max abs diff {c.max_abs:.2e}, '
            f'relative {c.rel:.2e}'
        )
    worst = max(c.rel for c in checks)
    if worst > TOLERANCE:
        raise ExportError(
            f'onnxruntime differs from PyTorch by {worst:.2e} '
            f'relative (tolerance {TOLERANCE:.0e})'
        )
    print(f'max relative difference {worst:.2e} <= {TOLERANCE:.0e}: OK')
    return 0
