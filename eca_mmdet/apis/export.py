"""ONNX export of a detector's dense outputs or of its backbone, checked in
onnxruntime against PyTorch, with the preprocessing the graph expects.

The graph takes the batch as mmdet's data preprocessor leaves it (resized,
channel order converted, normalised, padded to ``pad_size_divisor``) and
returns raw head outputs, with dynamic batch, height and width:

- single-stage detectors (RetinaNet): what mmdet's ``mode='tensor'``
  returns, the per-level class scores and box deltas (``part='tensor'``);
- two-stage detectors (Faster/Mask R-CNN): not mmdet's tensor mode, which
  goes on after the RPN with proposal NMS and RoIAlign from mmcv's compiled
  ops (no ONNX form without mmdeploy), but the FPN features and the RPN
  maps (``part='dense'``); proposals and the RoI heads stay in PyTorch;
- the backbone alone (``part='backbone'``).

Next to the ``.onnx`` file the tool writes ``<name>.preprocess.json``
(:func:`preprocess_file`, :func:`describe_preprocessing`): the steps from an
image file to the graph input, derived from the config's test pipeline and
``data_preprocessor``, and what each output holds. ``tools/export_onnx.py``
is the command line; docs/onnx_export.md describes both files.
"""

import argparse
import inspect
import json
import os
import os.path as osp
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..engine import (
    EcaMmdetError,
    atomic_write,
    atomic_writer,
    refuse_overwriting_inputs,
)
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
    'describe_outputs',
    'describe_preprocessing',
    'export_onnx',
    'main',
    'preprocess_file',
    'preprocessing_record',
    'require_onnx',
    'write_preprocessing',
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
    model.cfg = cfg
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
    try:
        # through a temp file renamed over ``out``: a failed or killed
        # export leaves the old file (or none), never a partial one
        with atomic_writer(out) as f, torch.no_grad():
            torch.onnx.export(
                model,
                (x,),
                f,
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


# The preprocessing file next to the .onnx file (describe_preprocessing).

PREPROCESS_SUFFIX = '.preprocess.json'
PREPROCESS_FORMAT = 'eca-mmdet onnx preprocessing, version 1'
# test-pipeline steps that leave the image as it is
_NO_IMAGE_EFFECT = (
    'LoadAnnotations',
    'LoadPanopticAnnotations',
    'LoadProposals',
    'PackDetInputs',
)
_LOADERS = ('LoadImageFromFile', 'SafeLoadImageFromFile')
_PREPROCESSORS = ('DetDataPreprocessor', 'ImgDataPreprocessor')
_CV2_FLAGS = {
    'nearest': 'INTER_NEAREST',
    'bilinear': 'INTER_LINEAR',
    'bicubic': 'INTER_CUBIC',
    'area': 'INTER_AREA',
    'lanczos': 'INTER_LANCZOS4',
}
_LEFT_IN_PYTORCH = {
    'tensor': 'anchors, box decoding, score threshold and NMS: '
    'results = model.bbox_head.predict_by_feat(cls_scores, bbox_preds, '
    'batch_img_metas=[meta], rescale=True) with the outputs as torch '
    'tensors and meta = dict(img_shape=(new_h, new_w), ori_shape=(h, w), '
    "scale_factor=scale_factor); boxes come back in the image file's "
    'pixels',
    'dense': 'proposals, the RoI heads and masks: proposals = '
    'model.rpn_head.predict_by_feat(rpn_cls_scores, rpn_bbox_preds, '
    'batch_img_metas=[meta], rescale=False); results = '
    'model.roi_head.predict(feats, proposals, '
    '[DetDataSample(metainfo=meta)], rescale=True) with the outputs as '
    'torch tensors and meta = dict(img_shape=(new_h, new_w), '
    'ori_shape=(h, w), scale_factor=scale_factor); boxes and masks come '
    "back in the image file's pixels",
    'backbone': 'the neck and the heads',
}


def preprocess_file(onnx_file: str) -> str:
    """The preprocessing file written next to ``onnx_file``:
    ``model.onnx`` -> ``model.preprocess.json`` (a name without ``.onnx``
    gets the suffix appended)."""
    base = onnx_file[:-5] if onnx_file.lower().endswith('.onnx') else onnx_file
    return base + PREPROCESS_SUFFIX


def _type_name(step) -> str:
    kind = step.get('type') if hasattr(step, 'get') else None
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    return str(name).rsplit('.', 1)[-1]


def _plain(value):
    """``value`` with config containers and tuples as JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _read_step(step: dict) -> dict:
    """How the loader ``step`` reads the image file, or {} when it is not
    described (another color_type)."""
    color = step.get('color_type', 'color')
    decoder = step.get('imdecode_backend', 'cv2')
    if color not in ('color', 'color_ignore_orientation'):
        return {}
    flag = 'cv2.IMREAD_COLOR'
    if color == 'color_ignore_orientation':
        flag += ' | cv2.IMREAD_IGNORE_ORIENTATION'
    how = (
        f'cv2.imread(path, {flag})'
        if decoder == 'cv2'
        else f'mmcv.imfrombytes(data, flag={color!r}, backend={decoder!r}, '
        "channel_order='bgr')"
    )
    return dict(
        read=how,
        decoder=decoder,
        exif_orientation=('applied' if color == 'color' else 'ignored'),
        channel_order='BGR',
        dtype='float32' if step.get('to_float32') else 'uint8',
        layout='HWC',
    )


def _resize_step(step: dict) -> dict:
    """The ``resize`` step of mmdet's ``Resize`` ``step`` (given ``scale``,
    the cv2 backend), or {} when it is not described."""
    scale = step.get('scale')
    interpolation = step.get('interpolation', 'bilinear')
    if (
        scale is None
        or step.get('backend', 'cv2') != 'cv2'
        or interpolation not in _CV2_FLAGS
    ):
        return {}
    if isinstance(scale, int):
        scale = (scale, scale)
    w, h = (int(s) for s in scale)
    flag = f'cv2.{_CV2_FLAGS[interpolation]}'
    keep = bool(step.get('keep_ratio', False))
    if keep:
        rule = (
            'h, w = the image size; factor = min(max(scale) / max(h, w), '
            'min(scale) / min(h, w)); new_w = int(w * factor + 0.5); '
            'new_h = int(h * factor + 0.5); img = cv2.resize(img, '
            f'(new_w, new_h), interpolation={flag}) on the image as read '
            '(a uint8 image stays uint8: cv2 rounds)'
        )
    else:
        rule = (
            f'new_w, new_h = {w}, {h}; img = cv2.resize(img, (new_w, new_h), '
            f'interpolation={flag}) on the image as read (a uint8 image '
            'stays uint8: cv2 rounds)'
        )
    return dict(
        op='resize',
        scale=[w, h],
        scale_order='(width, height)',
        keep_ratio=keep,
        interpolation=interpolation,
        cv2_interpolation=_CV2_FLAGS[interpolation],
        rule=rule,
    )


def describe_preprocessing(cfg) -> dict:
    """What turns an image file into the graph input, from ``cfg``'s test
    pipeline (mmdet's ``get_test_pipeline_cfg``) and
    ``model.data_preprocessor``, in mmdet's order: ``image`` (how the file
    is read), ``steps`` (each with ``op``: ``resize``,
    ``reverse_channels``, ``to_float32``, ``normalize``, ``pad``,
    ``to_nchw``), ``input_channel_order``, ``scale_factor`` (how boxes map
    back) and ``not_described``: the pipeline steps (config dicts) this
    cannot describe, which a user must reproduce from mmdet's code."""
    from mmdet.utils import get_test_pipeline_cfg

    not_described = []
    try:
        pipeline = list(get_test_pipeline_cfg(cfg))
    except Exception as e:  # no test_dataloader, no pipeline
        pipeline = []
        not_described.append(
            {
                'test pipeline': f'not found: {type(e).__name__}: {first_line(e)}'
            }
        )
    image, steps, resized = {}, [], False
    for step in pipeline:
        name = _type_name(step)
        described = {}
        if name in _LOADERS and not image:
            described = image = _read_step(step)
        elif name == 'Resize' and not resized:
            described = _resize_step(step)
            resized = bool(described)
            if described:
                steps.append(described)
        elif name in _NO_IMAGE_EFFECT or (
            name == 'RandomFlip' and not step.get('prob')
        ):
            continue
        if not described:
            not_described.append(_plain(dict(step)))
    if not image:
        image = _read_step({})
    order = 'BGR'
    pre = dict(cfg.model.get('data_preprocessor') or {})
    if _type_name(pre) not in _PREPROCESSORS:
        not_described.append({'model.data_preprocessor': _plain(pre) or None})
    if pre.get('bgr_to_rgb') or pre.get('rgb_to_bgr'):
        order = 'RGB'
        steps.append(
            dict(
                op='reverse_channels',
                result='RGB',
                rule='img = img[:, :, ::-1] (BGR -> RGB)',
            )
        )
    steps.append(dict(op='to_float32', rule='img = img.astype(np.float32)'))
    if pre.get('mean') is not None:
        steps.append(
            dict(
                op='normalize',
                mean=_plain(pre['mean']),
                std=_plain(pre.get('std', 1.0)),
                channel_order=order,
                rule='img = (img - mean) / std per channel, mean[0] and '
                f'std[0] for the first channel of the image as it is now '
                f'({order[0]})',
            )
        )
    divisor = int(pre.get('pad_size_divisor', 1))
    value = float(pre.get('pad_value', 0))
    steps.append(
        dict(
            op='pad',
            size_divisor=divisor,
            value=value,
            rule='append rows at the bottom and columns at the right up to '
            'ceil(h / size_divisor) * size_divisor rows and ceil(w / '
            'size_divisor) * size_divisor columns, filled with value'
            + (
                '; this comes after normalize, so value is in normalised '
                'units, not pixels'
                if pre.get('mean') is not None
                else ''
            )
            + ' (images batched together: each padded to the largest '
            'height and width of the batch, rounded up the same way)',
        )
    )
    steps.append(
        dict(
            op='to_nchw',
            rule='x = img.transpose(2, 0, 1)[None]: float32 (N, 3, H, W)',
        )
    )
    return dict(
        image=image,
        steps=steps,
        input_channel_order=order,
        scale_factor=(
            '(new_w / w, new_h / h) of the resize step ((1.0, 1.0) without '
            "one); outputs in the graph input's pixels map back to the "
            'image file by x / scale_factor[0] and y / scale_factor[1]; '
            'mmdet calls the resized size (new_h, new_w) img_shape and the '
            "file's (h, w) ori_shape"
        ),
        not_described=not_described,
    )


def _strides(model: TensorModel) -> List[Optional[int]]:
    """The stride of each level of ``model``'s outputs (heads: the prior
    generator's; backbone: a ResNet's stem and stage strides), or []."""
    det = model.detector
    if model.part == 'backbone':
        backbone = det.backbone
        stage = getattr(backbone, 'strides', None)
        if stage is None or not hasattr(backbone, 'out_indices'):
            return []
        total, cumulative = 4, []  # the stem: conv and max pooling
        for s in stage:
            total *= s
            cumulative.append(total)
        return [cumulative[i] for i in backbone.out_indices]
    head = getattr(
        det, 'rpn_head' if model.part == 'dense' else 'bbox_head', None
    )
    strides = getattr(getattr(head, 'prior_generator', None), 'strides', [])
    return [int(s[1]) if isinstance(s, tuple) else int(s) for s in strides]


def describe_outputs(
    model: TensorModel, shapes: Dict[str, Tuple[int, ...]]
) -> List[dict]:
    """Per output of ``model`` (``export_onnx``'s ``shapes``): its name,
    shape at the export size, stride and what it holds."""
    det = model.detector
    head = getattr(
        det, 'rpn_head' if model.part == 'dense' else 'bbox_head', None
    )
    anchors = getattr(head, 'num_base_priors', None)
    classes = getattr(head, 'cls_out_channels', None)
    sigmoid = getattr(head, 'use_sigmoid_cls', None)
    coder = getattr(head, 'bbox_coder', None)
    box_dim = getattr(coder, 'encode_size', 4)
    coder_text = f' of {type(coder).__name__}' if coder is not None else ''
    act = {True: 'before sigmoid', False: 'before softmax'}.get(sigmoid, 'raw')
    described = []
    strides = _strides(model)
    for name, shape in shapes.items():
        if name == INPUT_NAME:
            continue
        level = name.rstrip('0123456789')
        index = name[len(level) :]
        i = int(index) if index else -1
        stride = strides[i] if 0 <= i < len(strides) else None
        at = f'level {index}' + (f' (stride {stride})' if stride else '')
        if level == 'backbone':
            what = f'backbone output {index}' + (
                f' (stride {stride})' if stride else ''
            )
        elif level == 'feat':
            what = f'FPN feature map of {at}'
        elif level in ('rpn_cls_score', 'cls_score'):
            kind = 'RPN objectness' if level.startswith('rpn') else 'class'
            what = f'{kind} logits at {at}, {act}: ' + (
                f'channel a for anchor a (of {anchors})'
                if classes == 1
                else f'channel a * {classes} + c for anchor a (of '
                f'{anchors}) and class c (of {classes})'
            )
        elif level in ('rpn_bbox_pred', 'bbox_pred'):
            what = (
                f'box deltas{coder_text} at {at}, relative to the anchors: '
                f'channel a * {box_dim} + k for anchor a (of {anchors}) and '
                f'delta k (of {box_dim})'
            )
        else:
            what = f'head output {name} ({at})'
        described.append(
            dict(
                name=name,
                shape_at_export=list(shape),
                stride=stride,
                what=what,
            )
        )
    return described


def preprocessing_record(
    model: TensorModel,
    shapes: Dict[str, Tuple[int, ...]],
    onnx_file: str,
    config: str,
    checkpoint: Optional[str] = None,
    cfg_options: Optional[dict] = None,
) -> dict:
    """The content of :func:`preprocess_file`: :func:`describe_preprocessing`
    of the model's config, the input and :func:`describe_outputs`."""
    pre = describe_preprocessing(model.cfg)
    graph = {
        'tensor': "the head outputs of mmdet's mode='tensor'",
        'dense': "the FPN features and the RPN maps (not mmdet's "
        "mode='tensor', which goes on to proposals and RoI heads)",
        'backbone': 'the backbone outputs',
    }[model.part]
    record = dict(
        format=PREPROCESS_FORMAT,
        onnx_file=osp.basename(onnx_file),
        config=config,
        checkpoint=checkpoint,
        cfg_options=_plain(cfg_options) if cfg_options else None,
        part=model.part,
        graph=graph,
        image=pre['image'],
        steps=pre['steps'],
        input=dict(
            name=INPUT_NAME,
            layout='NCHW',
            dtype='float32',
            channel_order=pre['input_channel_order'],
            shape_at_export=list(shapes[INPUT_NAME]),
            dynamic_axes=['batch', 'height', 'width'],
        ),
        scale_factor=pre['scale_factor'],
        outputs=describe_outputs(model, shapes),
        left_in_pytorch=_LEFT_IN_PYTORCH[model.part],
        not_described=pre['not_described'],
    )
    return record


def write_preprocessing(record: dict, path: str) -> None:
    """Write ``record`` as JSON to ``path`` atomically."""
    atomic_write(json.dumps(record, indent=2) + '\n', path)


def _summary(record: dict) -> str:
    """One line of the steps of ``record``."""
    parts = []
    normalised = any(s['op'] == 'normalize' for s in record['steps'])
    for step in record['steps']:
        op = step['op']
        if op == 'resize':
            fit = 'to fit' if step['keep_ratio'] else 'to'
            keep = ' keeping the aspect ratio' if step['keep_ratio'] else ''
            w, h = step['scale']
            parts.append(
                f'resize {fit} {w}x{h}{keep} ({step["interpolation"]})'
            )
        elif op == 'reverse_channels':
            parts.append('BGR -> RGB')
        elif op == 'normalize':
            parts.append(f'mean {step["mean"]}, std {step["std"]}')
        elif op == 'pad':
            units = ' (normalised units)' if normalised else ''
            parts.append(
                f'pad to a multiple of {step["size_divisor"]} with '
                f'{step["value"]:g}{units}'
            )
    return ', '.join(parts)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``tools/export_onnx.py``."""
    parser = CliArgumentParser(
        prog='tools/export_onnx.py',
        description='Export a detector to ONNX (single-stage: the head '
        "outputs of mmdet's tensor mode; two-stage: the FPN features and "
        'RPN maps; or the backbone), write the preprocessing it expects '
        'next to it (NAME.preprocess.json), then compare onnxruntime with '
        'PyTorch on another input size.',
    )
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', nargs='?', help='weights (without: random weights)'
    )
    parser.add_argument(
        '--out',
        required=True,
        help='ONNX file to write; the preprocessing goes next to it '
        '(model.onnx -> model.preprocess.json)',
    )
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
    sidecar = preprocess_file(args.out)
    refuse_overwriting_inputs(
        [('--out', args.out), ('--out (its preprocessing file)', sidecar)],
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
        'tensor': "the head outputs of mmdet's tensor mode",
        'backbone': 'the backbone',
        'dense': 'the FPN features and RPN maps (not the tensor mode: '
        'the RoI stage needs mmcv ops without an ONNX form; see '
        'docs/onnx_export.md)',
    }[model.part]
    print(
        f'exported {what} of {args.config}, {weights}, to {args.out} '
        f'(opset {args.opset}, {_size(args.out)})'
    )
    record = preprocessing_record(
        model, shapes, args.out, args.config, args.checkpoint, args.cfg_options
    )
    write_preprocessing(record, sidecar)
    print(
        f'input  {INPUT_NAME} {shapes[INPUT_NAME]}: float32 NCHW '
        f'{record["input"]["channel_order"]}, batch, height and width '
        f'dynamic; preprocessing in {sidecar}: {_summary(record)}'
    )
    if record['not_described']:
        names = ', '.join(
            _type_name(s) or next(iter(s), '?')
            for s in record['not_described']
        )
        print(
            f'warning: {sidecar} cannot describe these steps of the test '
            f'pipeline or data preprocessor: {names} (listed under '
            "not_described); reproduce them from mmdet's code"
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
