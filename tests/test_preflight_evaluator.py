"""Preflight: a CocoMetric's own ``ann_file`` must cover the images and the
classes of the data set it scores. mmdet only finds out after the whole
evaluation (IndexError inside the metric, pycocotools' "Results do not
correspond to current coco set"), or scores another file's ground truth."""

import copy
import json

import pytest
from tools_testlib import explain, run_tool

pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402

from eca_mmdet.apis.preflight import (
    PreflightError,  # noqa: E402
    preflight_check,
)

VAL = 'val_dataloader.dataset'


@pytest.fixture
def shapes(shapes_data, tiny_config):
    """The session's shapes set and tiny config (conftest.py), read-only."""
    root, data, config = shapes_data.parent, shapes_data, tiny_config
    val = json.loads((data / 'annotations' / 'instances_val.json').read_text())
    return dict(root=root, data=data, config=config, val=val)


def _load(shapes, **options):
    cfg = Config.fromfile(str(shapes['config']))
    cfg.merge_from_dict(options)
    return cfg


def _val_ann(shapes):
    return str(shapes['data'] / 'annotations' / 'instances_val.json')


def _write(tmp_path, data, name='other_val.json'):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _with_evaluator_file(shapes, path, key='val_evaluator'):
    return _load(shapes, **{f'{key}.ann_file': path})


def test_a_copy_of_the_dataset_file_passes(shapes, tmp_path):
    """Another file (not the dataset's own, so it is compared) with the same
    images and categories: fine, in both modes; so is a superset."""
    copy_path = _write(tmp_path, shapes['val'])
    for key, mode in (('val_evaluator', 'train'), ('test_evaluator', 'test')):
        preflight_check(_with_evaluator_file(shapes, copy_path, key), mode)
    more = copy.deepcopy(shapes['val'])
    more['images'].append(
        dict(more['images'][0], id=10**6, file_name='extra.png')
    )
    more['categories'].append(dict(id=10**6, name='hexagon'))
    preflight_check(
        _with_evaluator_file(shapes, _write(tmp_path, more, 'more.json')),
        'train',
    )


def test_evaluator_file_missing_images(shapes, tmp_path):
    fewer = copy.deepcopy(shapes['val'])
    dropped = fewer['images'].pop(1)['id']
    path = _write(tmp_path, fewer)
    with pytest.raises(PreflightError) as info:
        preflight_check(_with_evaluator_file(shapes, path), 'train')
    msg = str(info.value)
    assert '\n' not in msg
    assert f'val_evaluator.ann_file={path!r}' in msg
    assert VAL in msg and _val_ann(shapes) in msg
    assert f'1 of the {len(shapes["val"]["images"])} image ids' in msg
    assert f'e.g. {dropped})' in msg
    assert f'--cfg-options val_evaluator.ann_file={_val_ann(shapes)}' in msg


def test_evaluator_file_with_other_images_under_the_same_ids(shapes, tmp_path):
    """The same ids for other pictures (e.g. another split numbered from 1)
    would score the predictions against the wrong ground truth."""
    other = copy.deepcopy(shapes['val'])
    image = other['images'][2]
    image['file_name'] = 'train/000099.png'
    path = _write(tmp_path, other)
    with pytest.raises(PreflightError) as info:
        preflight_check(_with_evaluator_file(shapes, path), 'train')
    msg = str(info.value)
    assert f'image id {image["id"]} is ' in msg and '000099.png' in msg

    resized = copy.deepcopy(shapes['val'])
    resized['images'][0]['width'] += 7
    path = _write(tmp_path, resized, 'resized.json')
    with pytest.raises(PreflightError, match='image id'):
        preflight_check(_with_evaluator_file(shapes, path), 'train')


def test_evaluator_file_missing_classes(shapes, tmp_path):
    renamed = copy.deepcopy(shapes['val'])
    renamed['categories'][0]['name'] = 'disc'
    old_name = shapes['val']['categories'][0]['name']
    path = _write(tmp_path, renamed)
    with pytest.raises(PreflightError) as info:
        preflight_check(_with_evaluator_file(shapes, path), 'train')
    msg = str(info.value)
    assert f'val_evaluator.ann_file={path!r}' in msg
    assert (
        f'lack 1 of the 4 classes of {VAL}.metainfo.classes '
        f'({old_name})' in msg
    )


def test_test_evaluator_against_the_test_dataset(shapes, tmp_path):
    fewer = copy.deepcopy(shapes['val'])
    fewer['images'] = fewer['images'][:1]
    path = _write(tmp_path, fewer)
    cfg = _with_evaluator_file(shapes, path, 'test_evaluator')
    preflight_check(cfg, 'train')  # the test evaluator is not used
    with pytest.raises(PreflightError) as info:
        preflight_check(cfg, 'test')
    assert 'test_evaluator.ann_file=' in str(info.value)
    assert 'test_dataloader.dataset (ann_file' in str(info.value)


def test_each_metric_of_a_list_is_checked(shapes, tmp_path):
    fewer = copy.deepcopy(shapes['val'])
    fewer['images'] = fewer['images'][1:]
    cfg = _load(
        shapes,
        val_evaluator=[
            dict(type='CocoMetric', metric='bbox', ann_file=_val_ann(shapes)),
            dict(
                type='CocoMetric',
                metric='bbox',
                ann_file=_write(tmp_path, fewer),
            ),
        ],
    )
    with pytest.raises(PreflightError, match=r'^val_evaluator\.1\.ann_file='):
        preflight_check(cfg, 'train')


def test_format_only_needs_the_classes_not_the_images(shapes, tmp_path):
    """format_only writes results without scoring them (e.g. test-dev), but
    label -> category id still goes through the file's category names."""
    fewer = copy.deepcopy(shapes['val'])
    fewer['images'] = fewer['images'][:1]
    cfg = _load(
        shapes,
        **{
            'test_evaluator.ann_file': _write(tmp_path, fewer),
            'test_evaluator.format_only': True,
        },
    )
    preflight_check(cfg, 'test')
    fewer['categories'] = fewer['categories'][:2]
    cfg = _load(
        shapes,
        **{
            'test_evaluator.ann_file': _write(tmp_path, fewer, 'cats.json'),
            'test_evaluator.format_only': True,
        },
    )
    with pytest.raises(PreflightError, match='classes'):
        preflight_check(cfg, 'test')


def test_only_the_reading_rank_compares(shapes, tmp_path):
    fewer = copy.deepcopy(shapes['val'])
    fewer['images'] = fewer['images'][1:]
    cfg = _with_evaluator_file(shapes, _write(tmp_path, fewer))
    preflight_check(cfg, 'train', read_annotations=False)
    with pytest.raises(PreflightError):
        preflight_check(cfg, 'train', read_annotations=True)


def test_evaluator_without_ann_file_is_not_compared(shapes):
    """mmdet then converts the data set's own annotations: nothing to
    compare."""
    cfg = _load(shapes)
    cfg.val_evaluator.pop('ann_file')
    preflight_check(cfg, 'train')


@pytest.mark.slow
def test_train_tool_check_names_evaluator_and_dataset(shapes, tmp_path):
    """tools/train.py --check with an evaluator file lacking val images:
    one line, exit 1 (the run would crash in its first validation)."""
    fewer = copy.deepcopy(shapes['val'])
    fewer['images'] = fewer['images'][:2]
    path = _write(tmp_path, fewer)
    proc = run_tool(
        [
            'train.py',
            shapes['config'],
            '--check',
            '--cfg-options',
            f'val_evaluator.ann_file={path}',
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
    errors = [
        ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')
    ]
    assert len(errors) == 1, explain(proc)
    assert f'val_evaluator.ann_file={path!r}' in errors[0]
    assert 'instances_val.json' in errors[0]
