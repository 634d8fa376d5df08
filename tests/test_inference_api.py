"""eca_mmdet.apis.predict against mmdet 3.3.0's inference_detector: the
same inputs (paths, BGR arrays, one or a list) give the same predictions,
mixed lists keep their order, ``model.cfg`` is never changed, and bad
inputs give one error naming them. The references are mmdet's own
``inference_detector`` and images read by cv2 / mmcv, not ``predict``."""

import copy
from pathlib import Path

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmdet.apis import inference_detector
from mmdet.structures import DetDataSample

from eca_mmdet.apis import load_detector, predict
from eca_mmdet.apis.inference import PredictInputError
from eca_mmdet.datasets import ImageReadError
from eca_mmdet.engine import EcaMmdetError

FIELDS = ('labels', 'scores', 'bboxes', 'masks')


def _load(trained_run):
    return load_detector(
        str(trained_run['config']), str(trained_run['checkpoints'][-1])
    )


@pytest.fixture(scope='module')
def model(trained_run):
    return _load(trained_run)


@pytest.fixture(scope='module')
def val_paths(trained_run):
    paths = sorted(str(p) for p in (trained_run['data'] / 'val').glob('*.png'))
    assert len(paths) >= 3
    return paths


def _assert_same(got, want):
    assert isinstance(got, DetDataSample) and isinstance(want, DetDataSample)
    a, b = got.pred_instances, want.pred_instances
    assert len(a) == len(b) > 0, 'no detections: the comparison tests nothing'
    for key in FIELDS:
        assert torch.equal(a[key], b[key]), key


def _pipeline_cfg(model):
    return copy.deepcopy(model.cfg.test_dataloader.dataset.pipeline)


def test_path_and_bgr_arrays_match_stock_inference_detector(
    trained_run, model, val_paths
):
    """A path, the same image as cv2.imread / mmcv.imread BGR arrays, and
    stock inference_detector on a fresh model for the path agree exactly;
    the RGB array (the old convention) does not."""
    fresh = _load(trained_run)
    for path in val_paths:
        want = inference_detector(fresh, path)
        _assert_same(predict(model, path), want)
        _assert_same(predict(model, cv2.imread(path)), want)
        _assert_same(predict(model, mmcv.imread(path)), want)
    # a list of paths and a list of BGR arrays, like inference_detector's
    want = inference_detector(fresh, val_paths)
    for got in (
        predict(model, val_paths),
        predict(model, [cv2.imread(p) for p in val_paths]),
        predict(model, tuple(val_paths)),
    ):
        assert isinstance(got, list) and len(got) == len(val_paths)
        for g, w in zip(got, want):
            _assert_same(g, w)
    rgb = predict(
        model, np.ascontiguousarray(cv2.imread(val_paths[0])[..., ::-1])
    )
    bgr = inference_detector(fresh, val_paths[0]).pred_instances
    assert not (
        len(rgb.pred_instances) == len(bgr)
        and torch.equal(rgb.pred_instances.scores, bgr.scores)
    ), 'RGB and BGR gave the same scores: channel order not tested'


def test_single_input_returns_one_sample(model, val_paths):
    """A bare string (not read character by character), a pathlib.Path and
    one array give one DetDataSample; a one-item list gives a list."""
    path = val_paths[0]
    one = predict(model, path)
    assert isinstance(one, DetDataSample)
    _assert_same(predict(model, Path(path)), one)
    as_list = predict(model, [path])
    assert isinstance(as_list, list) and len(as_list) == 1
    _assert_same(as_list[0], one)
    assert predict(model, []) == []


def test_array_then_path_then_mixed_keeps_model_cfg(model, val_paths):
    """An array call does not break later path calls (stock
    inference_detector's KeyError: 'img'); a mixed list keeps its order;
    model.cfg is unchanged by any of it."""
    text, pipeline = model.cfg.pretty_text, _pipeline_cfg(model)
    arrays = [cv2.imread(p) for p in val_paths]
    single = [predict(model, p) for p in val_paths]  # references, by path
    _assert_same(predict(model, arrays[1]), single[1])
    _assert_same(predict(model, val_paths[1]), single[1])
    order = [0, 1, 1, 2, 0, 2]
    kinds = ['path', 'array', 'path', 'path', 'array', 'array']
    mixed = [
        val_paths[i] if kind == 'path' else arrays[i]
        for i, kind in zip(order, kinds)
    ]
    got = predict(model, mixed)
    assert len(got) == len(mixed)
    for sample, i in zip(got, order):
        _assert_same(sample, single[i])
    assert model.cfg.pretty_text == text
    assert _pipeline_cfg(model) == pipeline
    assert pipeline[0]['type'] == 'LoadImageFromFile'


def test_stock_inference_detector_breaks_paths_after_an_array(
    trained_run, val_paths
):
    """What the README says of mmdet 3.3.0: inference_detector on an array
    changes model.cfg (a shallow copy), after which a path fails with
    KeyError: 'img'. predict still runs paths on such a model."""
    stock = _load(trained_run)
    inference_detector(stock, cv2.imread(val_paths[0]))
    assert (
        stock.cfg.test_dataloader.dataset.pipeline[0]['type']
        == 'mmdet.LoadImageFromNDArray'
    )
    with pytest.raises(KeyError, match='img'):
        inference_detector(stock, val_paths[0])
    _assert_same(
        predict(stock, val_paths[0]),
        inference_detector(_load(trained_run), val_paths[0]),
    )


def test_missing_or_corrupt_path_names_it(model, val_paths, tmp_path):
    missing = str(tmp_path / 'no_such_image.png')
    for images in (missing, [val_paths[0], missing]):
        with pytest.raises(ImageReadError, match='no_such_image.png') as e:
            predict(model, images)
        assert isinstance(e.value, EcaMmdetError)
        assert 'file not found' in str(e.value)
    with pytest.raises(ImageReadError, match='not a file'):
        predict(model, str(tmp_path))
    corrupt = tmp_path / 'corrupt.png'
    corrupt.write_bytes(b'not an image at all')
    with pytest.raises(ImageReadError, match='corrupt.png'):
        predict(model, str(corrupt))


def test_gray_arrays_read_like_a_gray_file(model, val_paths, tmp_path):
    """A gray array, (H, W) or (H, W, 1), gives what its gray PNG file
    gives (mmcv reads it as 3 equal channels)."""
    gray = cv2.cvtColor(cv2.imread(val_paths[0]), cv2.COLOR_BGR2GRAY)
    file = tmp_path / 'gray.png'
    assert cv2.imwrite(str(file), gray)
    want = inference_detector(model, str(file))
    _assert_same(predict(model, gray), want)
    _assert_same(predict(model, gray[..., None]), want)


@pytest.mark.parametrize(
    'image, words',
    [
        (np.zeros((32, 32, 4), np.uint8), '(32, 32, 4)'),
        (np.zeros((2, 32, 32, 3), np.uint8), '(2, 32, 32, 3)'),
        (np.zeros((0, 32, 3), np.uint8), '(0, 32, 3)'),
        (42, 'int'),
    ],
)
def test_other_inputs_are_refused_naming_them(model, val_paths, image, words):
    text = model.cfg.pretty_text
    with pytest.raises(PredictInputError) as e:
        predict(model, [val_paths[0], image])
    assert 'image 1' in str(e.value) and words in str(e.value)
    assert isinstance(e.value, EcaMmdetError)
    assert model.cfg.pretty_text == text
