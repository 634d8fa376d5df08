"""The recipes for your own data (configs/custom/) and the checks that tell
a user when a run cannot learn as configured.

The from-scratch recipe is trained, as a user would, on ``own_data`` (rings
and crosses, unlike the shapes set): copied out of the checkout, its EDIT
lines edited, ``tools/train.py --check`` then ``tools/train.py``.
"""

import json
import re
import time
from pathlib import Path

import pytest
from own_dataset import CATEGORIES, CLASSES
from tools_testlib import REPO, explain, run_stock_apis, run_tool

pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402

import eca_mmdet  # noqa: E402
from eca_mmdet.apis.recipe_check import (  # noqa: E402
    config_variable_warnings,
    learning_warnings,
)

SCRATCH = REPO / 'configs' / 'custom' / 'mask_rcnn_ecaresnet18_scratch.py'
FINETUNE = REPO / 'configs' / 'custom' / 'mask_rcnn_ecanet50_finetune.py'
# the from-scratch recipe on own_data: stated in configs/README.md
SCRATCH_EPOCHS = 12
SCRATCH_SCALE = (160, 160)
MIN_BOX_MAP, MIN_MASK_MAP = 0.40, 0.30


def edit_recipe(recipe: Path, out: Path, **values) -> Path:
    """Copy ``recipe`` to ``out`` with its ``NAME = ...`` lines set to
    ``values`` (repr), as a user edits the EDIT lines."""
    text = recipe.read_text()
    for name, value in values.items():
        text, n = re.subn(
            rf'^{name} = .*$', f'{name} = {value!r}', text, count=1, flags=re.M
        )
        assert n == 1, f'{recipe.name} has no line {name} = ...'
    out.write_text(text)
    return out


def _datasets(cfg):
    from eca_mmdet.apis.preflight import iter_datasets

    return {
        key: list(iter_datasets(cfg[key].dataset, f'{key}.dataset'))
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    }


def _resize_scales(cfg):
    return [
        tuple(step.scale)
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        for step in cfg[key].dataset.pipeline
        if step.type == 'Resize'
    ]


@pytest.mark.parametrize('recipe', [SCRATCH, FINETUNE])
def test_a_copied_recipe_reads_anywhere_with_one_input_size(recipe, tmp_path):
    copy = edit_recipe(
        recipe,
        tmp_path / 'mine.py',
        data_root='elsewhere/',
        classes=('a', 'b'),
        img_scale=(321, 123),
    )
    cfg = Config.fromfile(str(copy))
    assert _resize_scales(cfg) == [(321, 123)] * 3
    for items in _datasets(cfg).values():
        for _, ds in items:
            assert ds.data_root == 'elsewhere/'
            assert tuple(ds.metainfo.classes) == ('a', 'b')
    assert cfg.model.roi_head.bbox_head.num_classes == 2
    assert cfg.model.roi_head.mask_head.num_classes == 2
    assert cfg.val_evaluator.ann_file.startswith('elsewhere/')
    assert config_variable_warnings(cfg, _datasets(cfg)) == []


def test_a_child_configs_variables_that_never_arrive_are_named(tmp_path):
    child = tmp_path / 'child.py'
    child.write_text(
        f'_base_ = {str(SCRATCH)!r}\n'
        "data_root = 'mine/'\nclasses = ('ring', 'cross')\n"
        'img_scale = (320, 240)\n'
    )
    cfg = Config.fromfile(str(child))
    lines = config_variable_warnings(cfg, _datasets(cfg))
    assert len(lines) == 3, lines
    for name, line in zip(('data_root', 'classes', 'img_scale'), lines):
        assert line.startswith(f'child.py sets {name}='), line
        assert 'copy the recipe' in line
    # setting the keys that use them as well silences each warning
    child.write_text(
        child.read_text()
        + 'train_dataloader = dict(dataset=dict(data_root=data_root))\n'
    )
    cfg = Config.fromfile(str(child))
    assert len(config_variable_warnings(cfg, _datasets(cfg))) == 2


def test_a_base_variable_the_child_leaves_alone_is_not_named(tmp_path):
    """A child that sets the pipelines directly leaves the base's img_scale
    unused: that is not the child's mistake, and a saved (flat) config
    has no base at all."""
    child = tmp_path / 'child.py'
    child.write_text(
        f'_base_ = {str(SCRATCH)!r}\n'
        'train_dataloader = dict(dataset=dict(pipeline=['
        "dict(type='LoadImageFromFile'), "
        "dict(type='Resize', scale=(64, 64), keep_ratio=True), "
        "dict(type='PackDetInputs')]))\n"
        'test_dataloader = train_dataloader\n'
        'val_dataloader = train_dataloader\n'
    )
    cfg = Config.fromfile(str(child))
    assert cfg.img_scale != (64, 64) and _resize_scales(cfg) == [(64, 64)] * 3
    assert config_variable_warnings(cfg, _datasets(cfg)) == []
    # the same child assigning img_scale itself is named
    child.write_text(child.read_text() + 'img_scale = (96, 96)\n')
    cfg = Config.fromfile(str(child))
    lines = config_variable_warnings(cfg, _datasets(cfg))
    assert len(lines) == 1 and 'sets img_scale=(96, 96)' in lines[0], lines
    # its saved form names nothing
    saved = tmp_path / 'saved.py'
    cfg.dump(str(saved))
    cfg = Config.fromfile(str(saved))
    assert cfg.img_scale == (96, 96)
    assert config_variable_warnings(cfg, _datasets(cfg)) == []


@pytest.mark.parametrize(
    'name',
    [
        'mask_rcnn_ecanet50_1x.py',
        # img_scale used by Mosaic inside a MultiImageMixDataset wrapper
        'mmdet::yolox/yolox_tiny_8xb8-300e_coco.py',
        # data_root used as the start of each subset's root
        'mmdet::glip/odinw/glip_atss_swin-t_a_fpn_dyhead_pretrain_odinw13.py',
    ],
)
def test_stock_configs_have_no_variable_warning(name):
    import mmdet

    if name.startswith('mmdet::'):
        configs = Path(mmdet.__file__).parent / '.mim' / 'configs'
        path = configs / name[len('mmdet::') :]
    else:
        path = Path(eca_mmdet.config_path(name))
    cfg = Config.fromfile(str(path))
    assert config_variable_warnings(cfg, _datasets(cfg)) == []


def _finetune_without_weights(tmp_path):
    copy = edit_recipe(FINETUNE, tmp_path / 'ft.py', load_from=None)
    cfg = Config.fromfile(str(copy))
    cfg.model.backbone.init_cfg = None  # no ImageNet file either
    return cfg


def test_scratch_with_frozen_parts_warns(tmp_path):
    cfg = _finetune_without_weights(tmp_path)
    (line,) = learning_warnings(cfg, 10_000, pretrained=False)
    assert 'frozen_stages=1' in line and 'norm_eval=True' in line
    assert 'mask_rcnn_ecaresnet18_scratch.py' in line
    # with weights the same freezing is what fine-tuning wants
    assert learning_warnings(cfg, 10_000, pretrained=True) == []
    cfg.model.backbone.frozen_stages = -1
    cfg.model.backbone.norm_cfg = dict(type='GN', num_groups=16)
    assert learning_warnings(cfg, 10_000, pretrained=False) == []
    scratch = Config.fromfile(str(SCRATCH))
    assert learning_warnings(scratch, 10_000, pretrained=False) == []


def test_a_warm_up_longer_than_the_run_warns(tmp_path):
    cfg = _finetune_without_weights(tmp_path)
    cfg.model.backbone.frozen_stages = -1
    cfg.model.backbone.norm_eval = False
    cfg.train_cfg.max_epochs = 2
    cfg.train_dataloader.batch_size = 2
    # 2 epochs x 20 iterations < the recipe's 100-iteration warm-up
    (line,) = learning_warnings(cfg, 40, pretrained=True)
    assert line.startswith('param_scheduler.0 (LinearLR) warms up for 100 ')
    assert 'longer than the whole run (40 iterations' in line
    assert learning_warnings(cfg, 400, pretrained=True) == []
    # split over 8 processes, 400 images are 25 iterations an epoch
    assert len(learning_warnings(cfg, 400, True, world_size=8)) == 1
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=80)
    assert len(learning_warnings(cfg, None, pretrained=True)) == 1
    # the scratch recipe's warm-up is one epoch, whatever the data's size
    scratch = Config.fromfile(str(SCRATCH))
    scratch.train_cfg.max_epochs = 2
    assert learning_warnings(scratch, 3, pretrained=False) == []
    scratch.train_cfg.max_epochs = 1
    assert 'epoch(s), as long as the whole run' in ' '.join(
        learning_warnings(scratch, 3, pretrained=False)
    )


def test_moved_recipe_name_says_where_it_went():
    with pytest.raises(FileNotFoundError, match='custom/mask_rcnn_ecanet50_f'):
        eca_mmdet.config_path('finetune/mask_rcnn_ecanet50_custom.py')


@pytest.mark.slow
def test_check_names_what_cannot_learn_and_inherited_variables(
    own_data, tmp_path
):
    """What a user sees: the fine-tune recipe without any weights, then a
    child of the scratch recipe that sets only variables."""
    data_root = f'{own_data}/'
    copy = edit_recipe(
        FINETUNE,
        tmp_path / 'ft.py',
        data_root=data_root,
        classes=CLASSES,
        load_from=None,
    )
    options = ['model.backbone.init_cfg=None', 'train_cfg.max_epochs=2']
    proc = run_tool(
        ['train.py', copy, '--check', '--cfg-options', *options], cwd=tmp_path
    )
    assert proc.returncode == 0, explain(proc)
    warned = [
        line for line in proc.stderr.splitlines() if line.startswith('warn')
    ]
    assert any('trains from scratch' in line for line in warned), warned
    assert any('warms up for 100 iterations' in line for line in warned)

    child = tmp_path / 'child.py'
    child.write_text(
        "_base_ = __import__('eca_mmdet').config_path("
        "'custom/mask_rcnn_ecaresnet18_scratch.py')\n"
        f'data_root = {data_root!r}\nclasses = {CLASSES!r}\n'
    )
    proc = run_tool(['train.py', child, '--check'], cwd=tmp_path)
    assert proc.returncode == 1, explain(proc)
    (error,) = [ln for ln in proc.stderr.splitlines() if ln.startswith('err')]
    assert 'data/my_dataset/' in error
    assert f'note: child.py sets data_root={data_root!r}' in error


@pytest.mark.slow
def test_scratch_recipe_learns_on_data_unlike_the_shapes(own_data, tmp_path):
    copy = edit_recipe(
        SCRATCH,
        tmp_path / 'my_scratch.py',
        data_root=f'{own_data}/',
        classes=CLASSES,
        img_scale=SCRATCH_SCALE,
        max_epochs=SCRATCH_EPOCHS,
    )
    check = run_tool(['train.py', copy, '--check'], cwd=tmp_path)
    assert check.returncode == 0, explain(check)
    assert 'warning' not in check.stderr, check.stderr
    work = tmp_path / 'work'
    start = time.perf_counter()
    proc = run_tool(
        [
            'train.py',
            copy,
            '--work-dir',
            work,
            '--cfg-options',
            'randomness.seed=0',
        ],
        cwd=tmp_path,
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, explain(proc)
    (scalars,) = work.glob('*/vis_data/scalars.json')
    metrics = [
        json.loads(line)
        for line in scalars.read_text().splitlines()
        if 'coco/bbox_mAP' in line
    ]
    best_box = max(m['coco/bbox_mAP'] for m in metrics)
    best_mask = max(m['coco/segm_mAP'] for m in metrics)
    print(
        f'scratch recipe, {SCRATCH_EPOCHS} epochs: box {best_box:.3f} / '
        f'mask {best_mask:.3f} mAP in {seconds:.0f} s'
    )
    assert best_box >= MIN_BOX_MAP, metrics
    assert best_mask >= MIN_MASK_MAP, metrics
    (best,) = work.glob('best_coco_bbox_mAP_epoch_*.pth')

    # tools/test.py on the config the run saved: the best epoch's val mAP
    # again, with the annotation file's category ids
    saved = work / copy.name
    out = tmp_path / 'test'
    proc = run_tool(['test.py', saved, best, '--work-dir', out], cwd=tmp_path)
    assert proc.returncode == 0, explain(proc)
    tested = json.loads((out / 'metrics.json').read_text())
    assert abs(tested['coco/bbox_mAP'] - best_box) < 1e-3, (tested, best_box)
    dets = json.loads((out / 'results.bbox.json').read_text())
    assert {d['category_id'] for d in dets} == {c['id'] for c in CATEGORIES}

    # mmdet's own APIs on it, on a val image with objects
    val = json.loads((own_data / 'annotations' / 'val.json').read_text())
    with_objects = {
        a['image_id'] for a in val['annotations'] if not a['iscrowd']
    }
    name = next(i for i in val['images'] if i['id'] in with_objects)
    stock = run_stock_apis(
        saved, best, own_data / 'val' / name['file_name'], cwd=tmp_path
    )
    assert stock['classes'] == list(CLASSES)
    assert stock['path_n'] > 0 and stock['path_n'] == stock['array_n']
    assert stock['same_boxes'] and stock['inferencer_boxes']
    assert stock['inferencer_n'] == stock['path_n']
