"""The preprocessing file tools/export_onnx.py writes next to the .onnx
file (``model.onnx`` -> ``model.preprocess.json``): applied step by step
with numpy and cv2 to an image file (nothing else: a small interpreter of
the file, below), it gives the graph input mmdet's own path gives (the
config's test pipeline and ``model.data_preprocessor``), and the graph's
outputs in onnxruntime match PyTorch on that image. A wrong pad value, pad
space, channel order or resize rounding in the interpreter makes them
differ. Skipped without onnx/onnxruntime."""

import ast
import copy
import json
import math
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import Compose
from mmdet.structures import DetDataSample
from mmdet.utils import get_test_pipeline_cfg
from mmengine.config import Config

import eca_mmdet  # noqa: F401
from eca_mmdet.apis import export as export_api
from eca_mmdet.apis.export import build_export_model, describe_preprocessing

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHAPES = osp.join(REPO, 'configs/shapes/mask_rcnn_ecaresnet18_shapes.py')
RETINANET = osp.join(REPO, 'configs/retinanet_ecanet50_1x.py')
TOLERANCE = 1e-4
# (width, height): landscape and portrait, odd sizes whose resized side
# rounds up (the landscape one: 63 * 64 / 97 = 41.57 -> 42)
IMAGE_SIZES = [(97, 63), (45, 71)]
# RetinaNet at tiny widths (ResNet-50 layout, 8-channel stem), a small
# test scale and a pad value other than the default
RETINANET_OPTIONS = [
    'model.backbone.base_channels=8',
    'model.backbone.stem_channels=8',
    'model.backbone.init_cfg=None',
    'model.neck.in_channels=[32,64,128,256]',
    'model.neck.out_channels=16',
    'model.bbox_head.in_channels=16',
    'model.bbox_head.feat_channels=16',
    'model.test_cfg.score_thr=0.0',
    'model.data_preprocessor.pad_value=1.5',
    'test_dataloader.dataset.pipeline.1.scale=(160,96)',
]


def _write_image(path, size, seed):
    """A BGR PNG of ``size`` (width, height): smooth colour ramps and
    noise, each channel different."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [
            255 * xx / w,
            255 * yy / h,
            127 + 100 * np.sin((xx + 2 * yy) / 5.0),
        ],
        axis=-1,
    )
    img = img + rng.normal(0, 20, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), img)
    return str(path)


def preprocess_as_described(spec, image_file, round_half_up=True):
    """The graph input for ``image_file`` and mmdet's meta for it, from the
    preprocessing file ``spec`` alone (numpy and cv2)."""
    assert spec['image']['read'] == 'cv2.imread(path, cv2.IMREAD_COLOR)'
    assert spec['image']['channel_order'] == 'BGR'
    assert spec['image']['dtype'] == 'uint8'
    img = cv2.imread(image_file, cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    new_h, new_w, x = h, w, None
    for step in spec['steps']:
        op = step['op']
        if op == 'resize':
            sw, sh = step['scale']
            if step['keep_ratio']:
                f = min(max(sw, sh) / max(h, w), min(sw, sh) / min(h, w))
                rnd = 0.5 if round_half_up else 0.0
                new_w, new_h = int(w * f + rnd), int(h * f + rnd)
            else:
                new_w, new_h = sw, sh
            flag = getattr(cv2, step['cv2_interpolation'])
            img = cv2.resize(img, (new_w, new_h), interpolation=flag)
        elif op == 'reverse_channels':
            img = img[:, :, ::-1]
        elif op == 'to_float32':
            img = img.astype(np.float32)
        elif op == 'normalize':
            mean = np.asarray(step['mean'], np.float32)
            std = np.asarray(step['std'], np.float32)
            img = (img - mean) / std
        elif op == 'pad':
            d = step['size_divisor']
            ph, pw = img.shape[:2]
            out = np.full(
                (math.ceil(ph / d) * d, math.ceil(pw / d) * d, img.shape[2]),
                step['value'],
                img.dtype,
            )
            out[:ph, :pw] = img
            img = out
        elif op == 'to_nchw':
            x = np.ascontiguousarray(img.transpose(2, 0, 1)[None])
        else:
            raise AssertionError(f'step {op!r} not known')
    assert x is not None and x.dtype == np.float32
    meta = dict(
        img_shape=(new_h, new_w),
        ori_shape=(h, w),
        scale_factor=(new_w / w, new_h / h),
    )
    return x, meta


def mmdet_inputs(detector, cfg, image_file):
    """The graph input and the data samples by mmdet's own path: the test
    pipeline of ``cfg`` and the detector's data preprocessor."""
    pipeline = Compose(copy.deepcopy(get_test_pipeline_cfg(cfg)))
    data = pipeline(dict(img_path=image_file, img_id=0))
    batch = dict(inputs=[data['inputs']], data_samples=[data['data_samples']])
    with torch.no_grad():
        batch = detector.data_preprocessor(batch, False)
    return batch['inputs'], batch['data_samples']


def torch_outputs(detector, part, x):
    """The exported part computed by mmdet's modules on ``x``, flat."""
    with torch.no_grad():
        if part == 'dense':
            feats = detector.extract_feat(x)
            cls, reg = detector.rpn_head(feats)[:2]
            return [*feats, *cls, *reg]
        cls, reg = detector(x, mode='tensor')
        return [*cls, *reg]


def worst_difference(session, x, expected):
    """max over outputs of max|onnxruntime - torch| / max|torch| (inf on a
    shape mismatch)."""
    got = session.run(None, {'inputs': x})
    worst = 0.0
    for have, want in zip(got, expected):
        want = want.double().numpy()
        if have.shape != want.shape:
            return math.inf
        diff = np.abs(have.astype(np.float64) - want).max()
        worst = max(worst, diff / np.abs(want).max())
    return worst


WRONG = {
    'pad value': lambda s: [
        dict(t, value=t['value'] + 1.0) if t['op'] == 'pad' else t for t in s
    ],
    'pad in pixels': lambda s: sorted(
        s, key=lambda t: (t['op'] != 'resize', t['op'] != 'pad')
    ),
    'channel order': lambda s: [t for t in s if t['op'] != 'reverse_channels'],
}


def _export(config, out, extra):
    status = export_api.main([config, *extra, '--out', str(out)])
    assert status == 0
    spec_file = out.parent / (out.name[: -len('.onnx')] + '.preprocess.json')
    with open(spec_file) as f:
        return json.load(f)


def _check_from_raw_images(model, cfg, onnx_file, spec, tmp_path, finish):
    session = ort.InferenceSession(
        str(onnx_file), providers=['CPUExecutionProvider']
    )
    names = [o.name for o in session.get_outputs()]
    assert [o['name'] for o in spec['outputs']] == names
    det = model.detector
    for seed, size in enumerate(IMAGE_SIZES):
        image = _write_image(tmp_path / f'img{seed}.png', size, seed)
        want_x, samples = mmdet_inputs(det, cfg, image)
        x, meta = preprocess_as_described(spec, image)
        # the same graph input as mmdet's path, bit for bit, and its meta
        assert x.shape == tuple(want_x.shape)
        np.testing.assert_array_equal(x, want_x.numpy())
        mmdet_meta = samples[0].metainfo
        assert meta['img_shape'] == tuple(mmdet_meta['img_shape'])
        assert meta['ori_shape'] == tuple(mmdet_meta['ori_shape'])
        np.testing.assert_allclose(
            meta['scale_factor'], mmdet_meta['scale_factor']
        )
        # onnxruntime on it gives PyTorch's outputs of mmdet's own input
        expected = torch_outputs(det, model.part, want_x)
        assert len(expected) == len(names)
        assert worst_difference(session, x, expected) < TOLERANCE
        # what the file says is left to PyTorch gives mmdet's detections
        outs = dict(
            zip(names, torch_outputs(det, model.part, torch.from_numpy(x)))
        )
        got = finish(det, outs, meta)
        with torch.no_grad():
            want = det.predict(want_x, samples)[0].pred_instances
        assert len(want) > 0
        for key in ('bboxes', 'scores', 'labels'):
            torch.testing.assert_close(getattr(got, key), getattr(want, key))
        if 'masks' in want:
            assert torch.equal(got.masks, want.masks)
        if seed:
            continue
        # the interpreter is the test's only source: wrong steps show
        for what, wrong in WRONG.items():
            bad = dict(spec, steps=wrong(spec['steps']))
            assert bad['steps'] != spec['steps'], what
            bad_x, _ = preprocess_as_described(bad, image)
            assert worst_difference(session, bad_x, expected) > 1e-2, what
        trunc_x, _ = preprocess_as_described(spec, image, round_half_up=False)
        assert worst_difference(session, trunc_x, expected) > 1e-2


def _level(outs, prefix):
    """The outputs ``prefix0``, ``prefix1``, ... in order."""
    return [t for k, t in outs.items() if k.rstrip('0123456789') == prefix]


def _finish_two_stage(det, outs, meta):
    with torch.no_grad():
        proposals = det.rpn_head.predict_by_feat(
            _level(outs, 'rpn_cls_score'),
            _level(outs, 'rpn_bbox_pred'),
            batch_img_metas=[meta],
            rescale=False,
        )
        return det.roi_head.predict(
            _level(outs, 'feat'),
            proposals,
            [DetDataSample(metainfo=meta)],
            rescale=True,
        )[0]


def _finish_single_stage(det, outs, meta):
    with torch.no_grad():
        return det.bbox_head.predict_by_feat(
            _level(outs, 'cls_score'),
            _level(outs, 'bbox_pred'),
            batch_img_metas=[meta],
            rescale=True,
        )[0]


@pytest.mark.slow
def test_two_stage_file_reproduces_mmdet_from_raw_images(
    trained_run, tmp_path
):
    """The trained tiny Mask R-CNN: FPN features and RPN maps."""
    config, ckpt = (
        str(trained_run['config']),
        str(trained_run['checkpoints'][-1]),
    )
    out = tmp_path / 'mask_rcnn.onnx'
    spec = _export(config, out, [ckpt, '--shape', '64', '64'])
    assert spec['part'] == 'dense'
    assert spec['onnx_file'] == 'mask_rcnn.onnx'
    assert spec['not_described'] == []
    assert [s['op'] for s in spec['steps']] == [
        'resize',
        'reverse_channels',
        'to_float32',
        'normalize',
        'pad',
        'to_nchw',
    ]
    resize = spec['steps'][0]
    assert resize['scale'] == [64, 64] and resize['keep_ratio'] is True
    assert spec['steps'][4]['value'] == 0.0
    assert spec['steps'][4]['size_divisor'] == 32
    assert spec['input']['channel_order'] == 'RGB'
    model = build_export_model(config, ckpt)
    _check_from_raw_images(
        model, model.cfg, out, spec, tmp_path, _finish_two_stage
    )


@pytest.mark.slow
def test_single_stage_file_reproduces_mmdet_from_raw_images(tmp_path):
    """RetinaNet (tiny widths, random weights, pad value 1.5): mmdet's
    tensor mode, per-level class scores and box deltas."""
    model = build_export_model(
        RETINANET,
        cfg_options={
            k: ast.literal_eval(v)
            for k, v in (o.split('=', 1) for o in RETINANET_OPTIONS)
        },
    )
    ckpt = tmp_path / 'retinanet.pth'  # the random weights, for the tool
    torch.save(dict(state_dict=model.detector.state_dict()), ckpt)
    out = tmp_path / 'retinanet.onnx'
    options = ['--cfg-options', *RETINANET_OPTIONS]
    spec = _export(
        RETINANET, out, [str(ckpt), '--shape', '96', '160', *options]
    )
    assert spec['part'] == 'tensor'
    assert spec['not_described'] == []
    assert spec['steps'][0]['scale'] == [160, 96]
    pad = [s for s in spec['steps'] if s['op'] == 'pad'][0]
    assert pad['value'] == 1.5
    names = [o['name'] for o in spec['outputs']]
    assert names == [f'cls_score{i}' for i in range(5)] + [
        f'bbox_pred{i}' for i in range(5)
    ]
    assert [o['stride'] for o in spec['outputs'][:5]] == [8, 16, 32, 64, 128]
    assert spec['outputs'][0]['shape_at_export'] == [1, 9 * 80, 12, 20]
    assert model.cfg.test_dataloader.dataset.pipeline[1].type == 'Resize'
    _check_from_raw_images(
        model, model.cfg, out, spec, tmp_path, _finish_single_stage
    )


def test_steps_it_cannot_describe_are_listed():
    """Test-pipeline steps other than the loader, one Resize with a scale
    (cv2), annotations, packing and a flip that never flips are listed
    under not_described, whole."""
    cfg = Config(
        dict(
            model=dict(
                data_preprocessor=dict(
                    type='DetDataPreprocessor', mean=[1, 2, 3], std=[4, 5, 6]
                )
            ),
            test_dataloader=dict(
                dataset=dict(
                    pipeline=[
                        dict(type='LoadImageFromFile'),
                        dict(type='mmdet.Resize', scale=(64, 32)),
                        dict(type='Resize', scale_factor=0.5),
                        dict(type='RandomFlip', prob=0.0),
                        dict(type='RandomFlip', prob=0.5),
                        dict(type='Pad', size_divisor=8),
                        dict(type='LoadAnnotations', with_bbox=True),
                        dict(type='PackDetInputs'),
                    ]
                )
            ),
        )
    )
    spec = describe_preprocessing(cfg)
    assert [s['op'] for s in spec['steps']] == [
        'resize',
        'to_float32',
        'normalize',
        'pad',
        'to_nchw',
    ]
    assert spec['steps'][0]['keep_ratio'] is False
    assert spec['steps'][3]['size_divisor'] == 1
    assert spec['input_channel_order'] == 'BGR'
    assert spec['not_described'] == [
        dict(type='Resize', scale_factor=0.5),
        dict(type='RandomFlip', prob=0.5),
        dict(type='Pad', size_divisor=8),
    ]


def test_cli_warns_of_steps_it_cannot_describe(tmp_path, capsys):
    out = tmp_path / 'm.onnx'
    status = export_api.main(
        [
            SHAPES,
            '--out',
            str(out),
            '--shape',
            '64',
            '64',
            '--cfg-options',
            'test_dataloader.dataset.pipeline.1.backend=pillow',
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0, printed
    spec = json.loads((tmp_path / 'm.preprocess.json').read_text())
    assert [s['type'] for s in spec['not_described']] == ['Resize']
    assert (
        f'warning: {tmp_path / "m.preprocess.json"} cannot describe these '
        'steps of the test pipeline or data preprocessor: Resize'
    ) in printed
    # written atomically: no temporary file left
    assert sorted(os.listdir(tmp_path)) == ['m.onnx', 'm.preprocess.json']


def test_cli_refuses_a_preprocessing_file_that_is_an_input(tmp_path, capsys):
    """The checkpoint named like the preprocessing file of --out is not
    written over; nothing is written."""
    ckpt = tmp_path / 'm.preprocess.json'
    ckpt.write_bytes(b'weights')
    out = tmp_path / 'm.onnx'
    assert export_api.main([SHAPES, str(ckpt), '--out', str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        f'error: --out (its preprocessing file) {ckpt} is the checkpoint '
        f'{ckpt}: writing it would destroy the checkpoint; choose another '
        '--out (its preprocessing file)'
    )
    assert ckpt.read_bytes() == b'weights'
    assert not out.exists()


@pytest.mark.parametrize(
    'out,sidecar',
    [
        ('model.onnx', 'model.preprocess.json'),
        ('a/b.v2.ONNX', 'a/b.v2.preprocess.json'),
        ('model', 'model.preprocess.json'),
    ],
)
def test_preprocess_file_name(out, sidecar):
    assert export_api.preprocess_file(out) == sidecar
