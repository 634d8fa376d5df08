"""Our configs build on mmdet's and change only what ECA needs."""

import os
import os.path as osp
import re

import pytest
import yaml
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.hub import get_config

import eca_mmdet  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
register_all_modules()


def build(cfg):
    cfg.model.backbone.init_cfg = None
    return MODELS.build(cfg.model)


def unscoped(value):
    """A config value without the ``_scope_`` keys ``mmdet::`` bases add."""
    if isinstance(value, dict):
        return {k: unscoped(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [unscoped(v) for v in value]
    return value


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    'ours,theirs,extra',
    [
        (
            'mask_rcnn_ecanet50_1x.py',
            'mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py',
            80,
        ),
        (
            'mask_rcnn_ecanet101_1x.py',
            'mask_rcnn/mask-rcnn_r101_fpn_1x_coco.py',
            157,
        ),
        (
            'faster_rcnn_ecanet50_1x.py',
            'faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
            80,
        ),
        (
            'retinanet_ecanet50_1x.py',
            'retinanet/retinanet_r50_fpn_1x_coco.py',
            80,
        ),
    ],
)
def test_eca_detector_is_mmdet_detector_plus_eca(ours, theirs, extra):
    cfg = Config.fromfile(osp.join(REPO, 'configs', ours))
    base = get_config('mmdet::' + theirs)
    assert cfg.model.backbone.type == 'ECAResNet'
    assert cfg.model.backbone.init_cfg.type == 'Pretrained'
    assert cfg.model.backbone.init_cfg.checkpoint.startswith('checkpoints/')
    # same schedule, data and heads as mmdet's: only the backbone differs
    assert unscoped(cfg.train_cfg) == unscoped(base.train_cfg)
    assert unscoped(cfg.param_scheduler) == unscoped(base.param_scheduler)
    assert unscoped(cfg.optim_wrapper.optimizer) == unscoped(
        base.optim_wrapper.optimizer
    )
    assert cfg.train_dataloader.dataset.data_root == 'data/coco/'
    assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)
    assert unscoped(cfg.model.neck) == unscoped(base.model.neck)
    assert n_params(build(cfg)) - n_params(build(base)) == extra


def test_schedule_is_1x():
    cfg = Config.fromfile(osp.join(REPO, 'configs/mask_rcnn_ecanet50_1x.py'))
    assert cfg.train_cfg.max_epochs == 12
    steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
    assert steps[0].milestones == [8, 11]
    assert cfg.optim_wrapper.optimizer.lr == 0.02


def test_timm_resnet_d_config():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/mask_rcnn_ecaresnet50d_1x.py')
    )
    model = build(cfg)
    assert model.backbone.deep_stem and model.backbone.avg_down
    assert model.backbone.layer4[0].eca.k_size == 7
    assert model.backbone.out_channels == list(cfg.model.neck.in_channels)


def test_shapes_config_builds_slim_model():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/shapes/mask_rcnn_ecaresnet18_shapes.py')
    )
    model = build(cfg)
    assert model.backbone.depth == 18
    assert model.backbone.out_channels == list(cfg.model.neck.in_channels)
    assert model.roi_head.bbox_head.num_classes == len(cfg.metainfo['classes'])
    assert n_params(model) < 15e6


def _readme_table_rows(text):
    """The first markdown table after the start of ``text``: one list of
    cells per row, header and separator left out."""
    rows = []
    for line in text.splitlines():
        if line.startswith('|'):
            rows.append(
                [c.strip() for c in line.strip().strip('|').split('|')]
            )
        elif rows:
            break
    return rows[2:]


def test_metafile_agrees_with_the_configs_readme():
    """configs/metafile.yml names existing configs, exactly the ones of the
    results tables in configs/README.md (with the same figures) and in the
    README."""
    with open(osp.join(REPO, 'configs', 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    readme = open(osp.join(REPO, 'configs', 'README.md')).read()
    results = readme.split('## Results on COCO 2017 val', 1)[1]
    table = {
        'configs/' + row[0].strip('`'): row[3]
        for row in _readme_table_rows(results)
    }
    assert table, 'no results table in configs/README.md'
    for collection in meta['Collections']:
        assert osp.isfile(osp.join(REPO, collection['README']))
        assert osp.isfile(osp.join(REPO, collection['Code']['URL']))
    models = meta['Models']
    configs = [m['Config'] for m in models]
    assert len(set(configs)) == len(configs)
    assert sorted(configs) == sorted(table)
    for model in models:
        assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
        metrics = {}
        for result in model['Results']:
            metrics.update(result['Metrics'])
        figures = re.findall(r'\d+\.\d', table[model['Config']])
        expected = dict(zip(['box AP', 'mask AP'], map(float, figures)))
        assert metrics == expected, model['Name']
    # the results table of the top-level README links the same configs
    top = open(osp.join(REPO, 'README.md')).read()
    top = top.split('## Results and models', 1)[1].split('\n## ', 1)[0]
    linked = re.findall(r'\]\((configs/[^)]+\.py)\)', top)
    assert sorted(set(linked)) == sorted(configs)


def test_configs_readme_lists_every_config():
    """The first table of configs/README.md names every config file (not
    the _base_ parts), and nothing else."""
    readme = open(osp.join(REPO, 'configs', 'README.md')).read()
    listed = {row[0].strip('`') for row in _readme_table_rows(readme)}
    on_disk = set()
    for root, _, files in os.walk(osp.join(REPO, 'configs')):
        for name in files:
            path = osp.relpath(osp.join(root, name), osp.join(REPO, 'configs'))
            if name.endswith('.py') and not path.startswith('_base_'):
                on_disk.add(path)
    assert listed == on_disk
