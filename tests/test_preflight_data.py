"""Preflight: what would make evaluation silently wrong or crash a
run later stops at the check with one line (invalid boxes pycocotools would
score, a file with nothing to score, images of another size than annotated,
empty image files, malformed RLE masks, a model config that does not build).
"""

import copy
import json

import cv2
import numpy as np
import pytest
from tools_testlib import explain, run_tool, write_config

pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402

from eca_mmdet.apis.preflight import (
    PreflightError,  # noqa: E402
    preflight_check,
)
from eca_mmdet.datasets import AnnotationError  # noqa: E402


@pytest.fixture
def shapes(shapes_data, tiny_config):
    """The session's shapes set and tiny config (conftest.py), read-only,
    and its annotation files as loaded JSON."""
    root, data, config = shapes_data.parent, shapes_data, tiny_config
    ann = data / 'annotations'
    return dict(
        root=root,
        data=data,
        config=config,
        val=json.loads((ann / 'instances_val.json').read_text()),
        train=json.loads((ann / 'instances_train.json').read_text()),
    )


def _one_error(proc):
    assert proc.returncode == 1, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
    errors = [
        ln
        for ln in proc.stderr.splitlines()
        if ln.strip() and not ln.startswith('warning: ')
    ]
    assert len(errors) == 1 and errors[0].startswith('error: '), explain(proc)
    return errors[0]


def _val_config(shapes, tmp_path, val):
    """The tiny config whose val/test set and evaluators read ``val``."""
    path = tmp_path / 'val.json'
    path.write_text(json.dumps(val))
    cfg = Config.fromfile(str(shapes['config']))
    cfg.merge_from_dict(
        {
            'val_dataloader.dataset.ann_file': str(path),
            'val_evaluator.ann_file': str(path),
        }
    )
    cfg.test_dataloader = cfg.val_dataloader
    cfg.test_evaluator = cfg.val_evaluator
    return cfg, str(path)


def test_invalid_box_in_a_scored_file_is_reported(shapes, tmp_path):
    """A negative-width box in the val set: mmdet leaves it out, but
    CocoMetric (pycocotools on the file) scores it as a missed object. One
    rule for every degenerate box (round 3): counted in a warning naming
    the file and the id, never a refusal."""
    val = copy.deepcopy(shapes['val'])
    bad = dict(val['annotations'][0], id=10**6)
    bad['bbox'] = [20, 20, -5, 10]
    val['annotations'].append(bad)
    cfg, path = _val_config(shapes, tmp_path, val)
    for mode in ('train', 'test'):
        warnings = []
        preflight_check(cfg, mode, warnings=warnings)
        assert any(
            w.startswith(f'{path}: 1 of ')
            and f'ids {10**6}' in w
            and 'negative width' in w
            for w in warnings
        ), warnings
    # the same box in a training file is skipped with a warning
    train = copy.deepcopy(shapes['train'])
    train['annotations'].append(dict(bad, image_id=train['images'][0]['id']))
    (tmp_path / 'train.json').write_text(json.dumps(train))
    cfg.train_dataloader.dataset.ann_file = str(tmp_path / 'train.json')
    cfg.merge_from_dict(
        {
            'val_dataloader.dataset.ann_file': str(
                shapes['data'] / 'annotations' / 'instances_val.json'
            ),
            'val_evaluator.ann_file': str(
                shapes['data'] / 'annotations' / 'instances_val.json'
            ),
        }
    )
    warnings = []
    preflight_check(cfg, 'train', warnings=warnings)
    assert any(str(10**6) in w and 'negative width' in w for w in warnings)


@pytest.mark.parametrize('keep', ['none', 'crowd_only'])
def test_scored_file_without_annotations_stops(shapes, tmp_path, keep):
    """No annotation (or only crowd regions) to score: every metric would
    be -1 with exit 0. Unless the metric only writes results."""
    val = copy.deepcopy(shapes['val'])
    if keep == 'none':
        val['annotations'] = []
    else:
        for ann in val['annotations']:
            ann['iscrowd'] = 1
    cfg, path = _val_config(shapes, tmp_path, val)
    for mode, key in (('train', 'val_evaluator'), ('test', 'test_evaluator')):
        with pytest.raises(PreflightError) as info:
            preflight_check(cfg, mode)
        message = str(info.value)
        assert (
            message.startswith(f'{path} has no annotation {key} can score')
            and 'would be -1' in message
        )
    # the metric built from the data set (no ann_file) is checked too
    cfg.val_evaluator.ann_file = None
    with pytest.raises(PreflightError, match='has no annotation'):
        preflight_check(cfg, 'train')
    cfg.val_evaluator.update(
        format_only=True, outfile_prefix=str(tmp_path / 'r')
    )
    preflight_check(cfg, 'train')


def _copy_data(shapes, tmp_path):
    import shutil

    data = tmp_path / 'shapes'
    shutil.copytree(shapes['data'], data)
    config = write_config(tmp_path / 'c.py', data, max_epochs=1)
    return data, config


@pytest.mark.slow
@pytest.mark.parametrize(
    'split,width,height', [('val', 50, 40), ('val', 1, 1), ('train', 50, 40)]
)
def test_image_of_another_size_stops_evaluation(
    shapes, tmp_path, split, width, height
):
    """A val image whose real size differs from its entry (e.g. a 1x1
    placeholder): named with both sizes before the model is built. A
    training image is not read here (the loader skips it, see
    test_image_loading.py)."""
    data, config = _copy_data(shapes, tmp_path)
    cfg = Config.fromfile(str(config))
    victim = sorted((data / split).glob('*.png'))[0]
    cv2.imwrite(str(victim), np.zeros((height, width, 3), np.uint8))
    if split == 'train':
        preflight_check(cfg, 'train')
        return
    with pytest.raises(PreflightError) as info:
        preflight_check(cfg, 'train')
    assert str(info.value).startswith(
        f'image {victim} is {width}x{height} pixels but annotated as 64x64 '
        '(width x height) in '
    )
    if width == 1:
        return
    assert 'val_dataloader.dataset' in str(info.value)
    victim.write_bytes(b'')
    error = _one_error(
        run_tool(
            ['test.py', config, tmp_path / 'none.pth', '--check'], cwd=tmp_path
        )
    )
    assert error.startswith(
        f'error: image {victim} is an empty file (0 bytes)'
    ), error


def test_malformed_rle_mask_stops(shapes, tmp_path):
    """An RLE mask of another size than its image crashes mmdet's mask
    loading mid-epoch: named at the check."""
    train = copy.deepcopy(shapes['train'])
    ann = train['annotations'][3]
    ann['segmentation'] = {'size': [32, 32], 'counts': [100, 924]}
    path = tmp_path / 'train.json'
    path.write_text(json.dumps(train))
    cfg = Config.fromfile(str(shapes['config']))
    cfg.train_dataloader.dataset.ann_file = str(path)
    with pytest.raises(AnnotationError) as info:
        preflight_check(cfg, 'train')
    assert str(info.value).startswith(
        f'{path}: annotations id {ann["id"]!r} (image {ann["image_id"]!r}) '
        'has an RLE "size" [32, 32] that is not its image\'s'
    )


@pytest.mark.parametrize(
    'option,value,key,needle',
    [
        ('arch', 'ecaresnet_nope', 'model.backbone.arch', 'unknown ECAResNet'),
        ('eca_k_size', 4, 'model.backbone.eca_k_size', 'positive odd'),
        ('eca_k_size', -3, 'model.backbone.eca_k_size', 'positive odd'),
        ('eca_k_size', [3, 5], 'model.backbone.eca_k_size', 'one kernel size'),
        ('depth', 7, 'model.backbone.depth', 'invalid depth 7'),
        ('type', 'NoSuchNet', 'model.backbone.type', 'NoSuchNet'),
        ('eca_ksize', 3, 'model.backbone.eca_ksize', 'unexpected keyword'),
    ],
)
def test_model_that_does_not_build_stops_the_check(
    shapes, option, value, key, needle
):
    cfg = Config.fromfile(str(shapes['config']))
    cfg.model.backbone[option] = value
    for mode in ('train', 'test'):
        with pytest.raises(PreflightError) as info:
            preflight_check(cfg, mode)
        message = str(info.value)
        assert message.startswith(f'cannot build the model from {key}: ')
        assert needle in message and f'--cfg-options {key}=' in message


@pytest.mark.slow
def test_train_check_builds_the_model(shapes, tmp_path):
    error = _one_error(
        run_tool(
            [
                'train.py',
                shapes['config'],
                '--check',
                '--cfg-options',
                'model.backbone.eca_k_size=4',
            ],
            cwd=tmp_path,
        )
    )
    assert error.startswith(
        'error: cannot build the model from '
        'model.backbone.eca_k_size: ValueError: '
    ), error
    assert 'got 4' in error
