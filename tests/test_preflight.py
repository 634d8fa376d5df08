"""Preflight: a missing dataset / checkpoint stops the tools at once with one
line naming the path and the override (exit 1, no traceback)."""

import shutil

import pytest
import torch
from tools_testlib import (
    REPO,
    explain,
    free_port,
    run_tool,
    tool_env,
    write_config,
)

pytest.importorskip('mmdet')

from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402

from eca_mmdet.apis.preflight import (
    PreflightError,  # noqa: E402
    preflight_check,
)
from eca_mmdet.engine import CheckpointMismatchError  # noqa: E402


@pytest.fixture
def shapes(shapes_data, tiny_config):
    """The session's shapes set and tiny config (conftest.py), read-only."""
    return dict(root=shapes_data.parent, data=shapes_data, config=tiny_config)


def _load(shapes, **options):
    cfg = Config.fromfile(str(shapes['config']))
    cfg.merge_from_dict(options)
    return cfg


def _assert_one_line_error(proc, *needles):
    assert proc.returncode == 1, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith('error: ')]
    assert len(errors) == 1, explain(proc)
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


# --- in-process checks of preflight_check ----------------------------------


def test_complete_config_passes(shapes):
    cfg = _load(shapes)
    assert preflight_check(cfg, 'train') == [
        'train_dataloader',
        'val_dataloader',
    ]
    assert preflight_check(cfg, 'test', checkpoint=None) == ['test_dataloader']


@pytest.mark.parametrize('mode', ['train', 'test'])
def test_missing_data_root(shapes, tmp_path, mode):
    missing = str(tmp_path / 'no_such_dir') + '/'
    key = f'{mode}_dataloader.dataset'
    cfg = _load(shapes, **{f'{key}.data_root': missing})
    with pytest.raises(PreflightError) as info:
        preflight_check(cfg, mode)
    msg = str(info.value)
    assert missing in msg and f'--cfg-options {key}.data_root=' in msg


def test_missing_annotation_file_and_image_dir(shapes, tmp_path):
    data = tmp_path / 'partial'
    shutil.copytree(shapes['data'], data)
    cfg = _load(shapes, **{'train_dataloader.dataset.data_root': str(data)})
    (data / 'annotations' / 'instances_train.json').unlink()
    with pytest.raises(
        PreflightError, match='annotation file not found.*instances_train.json'
    ):
        preflight_check(cfg, 'train')
    shutil.copy(
        shapes['data'] / 'annotations' / 'instances_train.json',
        data / 'annotations',
    )
    shutil.rmtree(data / 'train')
    with pytest.raises(
        PreflightError, match=r'image directory not found: .*partial/train'
    ):
        preflight_check(cfg, 'train')


def test_missing_evaluator_annotation(shapes, tmp_path):
    missing = str(tmp_path / 'val.json')
    cfg = _load(shapes, **{'test_evaluator.ann_file': missing})
    with pytest.raises(
        PreflightError, match='test_evaluator.ann_file=FILE'
    ) as info:
        preflight_check(cfg, 'test')
    assert missing in str(info.value)


def test_validation_data_checked_when_training(shapes, tmp_path):
    missing = str(tmp_path / 'val_root')
    cfg = _load(shapes, **{'val_dataloader.dataset.data_root': missing})
    with pytest.raises(PreflightError, match='val_dataloader.dataset'):
        preflight_check(cfg, 'train')


def test_wrapped_datasets_are_walked(shapes, tmp_path):
    cfg = _load(shapes)
    inner = cfg.train_dataloader.dataset
    inner.data_root = str(tmp_path / 'gone')
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset',
        times=2,
        dataset=dict(type='ConcatDataset', datasets=[inner]),
    )
    with pytest.raises(PreflightError) as info:
        preflight_check(cfg, 'train')
    assert 'train_dataloader.dataset.dataset.datasets.0.data_root' in str(
        info.value
    )


def test_missing_pretrained_checkpoint(shapes, tmp_path):
    ckpt = str(tmp_path / 'checkpoints' / 'ecanet18.pth')
    cfg = _load(shapes)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=ckpt)
    with pytest.raises(PreflightError) as info:
        preflight_check(cfg, 'train')
    msg = str(info.value)
    assert ckpt in msg
    assert f'python tools/convert_weights.py SRC {ckpt}' in msg
    assert 'model.backbone.init_cfg.checkpoint=PATH' in msg
    # testing does not initialise the backbone from it
    preflight_check(cfg, 'test')
    # present and fitting the backbone -> fine
    (tmp_path / 'checkpoints').mkdir()
    backbone = dict(cfg.model.backbone, init_cfg=None)
    torch.save(MODELS.build(backbone).state_dict(), ckpt)
    preflight_check(cfg, 'train')


def test_torchvision_pretrained_is_flagged(shapes):
    cfg = _load(shapes)
    cfg.model.backbone.init_cfg = dict(
        type='Pretrained', checkpoint='torchvision://resnet50'
    )
    with pytest.raises(PreflightError, match='tools/convert_weights.py'):
        preflight_check(cfg, 'train')


def test_missing_checkpoints_to_test_resume_or_load(shapes, tmp_path):
    missing = str(tmp_path / 'epoch_9.pth')
    with pytest.raises(PreflightError, match='checkpoint to test'):
        preflight_check(_load(shapes), 'test', checkpoint=missing)
    with pytest.raises(PreflightError, match='resume from'):
        preflight_check(_load(shapes, resume=True, load_from=missing), 'train')
    with pytest.raises(PreflightError, match='load_from'):
        preflight_check(_load(shapes, load_from=missing), 'train')


def test_unloadable_checkpoint_files_stop_at_start(shapes, tmp_path):
    """An empty or text file given as a checkpoint (to test, resume, load
    or as pretrained weights) stops before anything is built, saying what
    is wrong with it."""
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    text = tmp_path / 'notes.pth'
    text.write_text('these are not weights\n')
    with pytest.raises(
        PreflightError,
        match=r'checkpoint to test .*empty\.pth is empty '
        r'\(0 bytes\)',
    ):
        preflight_check(_load(shapes), 'test', checkpoint=str(empty))
    with pytest.raises(PreflightError, match=r'notes\.pth is not a'):
        preflight_check(
            _load(shapes, resume=True, load_from=str(text)), 'train'
        )
    with pytest.raises(
        PreflightError, match=r'\(load_from\) .*empty\.pth is '
    ):
        preflight_check(_load(shapes, load_from=str(empty)), 'train')
    cfg = _load(shapes)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(text))
    with pytest.raises(
        PreflightError,
        match=r'pretrained checkpoint .*notes\.pth '
        r'\(model\.backbone\.init_cfg\.checkpoint\) is not a',
    ):
        preflight_check(cfg, 'train')


# --- the tools: one line, exit 1 -------------------------------------------


@pytest.mark.slow
def test_train_tool_missing_data_root(shapes, tmp_path):
    missing = str(tmp_path / 'nowhere') + '/'
    work = tmp_path / 'work'
    proc = run_tool(
        [
            'train.py',
            shapes['config'],
            '--work-dir',
            work,
            '--cfg-options',
            f'train_dataloader.dataset.data_root={missing}',
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(
        proc, missing, 'train_dataloader.dataset.data_root='
    )
    assert not list(work.glob('*.pth'))


@pytest.mark.slow
def test_train_tool_missing_pretrained(shapes, tmp_path):
    ckpt = str(tmp_path / 'ecanet18_mmdet.pth')
    config = tmp_path / 'pretrained.py'
    config.write_text(
        f'_base_ = {str(shapes["config"])!r}\n'
        'model = dict(backbone=dict(init_cfg=dict(\n'
        f"    _delete_=True, type='Pretrained', checkpoint={ckpt!r})))\n"
    )
    proc = run_tool(
        ['train.py', config, '--work-dir', tmp_path / 'work'], cwd=tmp_path
    )
    _assert_one_line_error(
        proc,
        ckpt,
        'tools/convert_weights.py',
        'model.backbone.init_cfg.checkpoint',
    )


@pytest.mark.slow
def test_train_tool_backbone_checkpoint_misfit(shapes, tmp_path):
    """Weights for another ECA kernel size: one line naming the key and both
    shapes, before any training step (mmengine would only log it)."""
    import torch

    from eca_mmdet.models import ECAResNet

    ckpt = tmp_path / 'ecanet18_k3.pth'
    torch.save(
        ECAResNet(
            depth=18, eca_k_size=3, stem_channels=16, base_channels=16
        ).state_dict(),
        ckpt,
    )
    config = tmp_path / 'misfit.py'
    config.write_text(
        f'_base_ = {str(shapes["config"])!r}\n'
        'model = dict(backbone=dict(eca_k_size=5, init_cfg=dict(\n'
        f"    _delete_=True, type='Pretrained', checkpoint={str(ckpt)!r})))\n"
    )
    work = tmp_path / 'work'
    proc = run_tool(['train.py', config, '--work-dir', work], cwd=tmp_path)
    _assert_one_line_error(
        proc,
        str(ckpt),
        'layer1.0.eca.conv.weight',
        'checkpoint (1, 1, 3) vs model (1, 1, 5)',
    )
    assert not list(work.glob('epoch_*.pth'))


@pytest.mark.slow
def test_stock_coco_config_without_coco(tmp_path):
    """configs/mask_rcnn_ecanet50_1x.py run where there is no data/coco."""
    proc = run_tool(
        [
            'train.py',
            REPO / 'configs' / 'mask_rcnn_ecanet50_1x.py',
            '--work-dir',
            tmp_path / 'work',
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(proc, 'data/coco', '--cfg-options')


@pytest.mark.slow
def test_test_tool_missing_checkpoint(shapes, tmp_path):
    missing = str(tmp_path / 'epoch_12.pth')
    proc = run_tool(
        ['test.py', shapes['config'], missing, '--work-dir', tmp_path / 'out'],
        cwd=tmp_path,
    )
    _assert_one_line_error(proc, missing)


@pytest.mark.slow
def test_missing_config_and_bad_option(tmp_path):
    proc = run_tool(['train.py', tmp_path / 'nope.py'], cwd=tmp_path)
    _assert_one_line_error(proc, 'config file not found', 'nope.py')
    proc = run_tool(['test.py'], cwd=tmp_path)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_dist_train_checks_once_before_starting(shapes, tmp_path):
    """tools/dist_train.sh: bad input gives one line, not a torchrun
    failure report from every process."""
    missing = str(tmp_path / 'nowhere') + '/'
    env = tool_env()
    env['PORT'] = str(free_port())
    proc = run_tool(
        [
            'dist_train.sh',
            shapes['config'],
            '2',
            '--work-dir',
            tmp_path / 'work',
            '--cfg-options',
            f'train_dataloader.dataset.data_root={missing}',
        ],
        cwd=tmp_path,
        env=env,
    )
    _assert_one_line_error(proc, missing)
    assert 'ChildFailedError' not in proc.stderr


@pytest.mark.slow
def test_check_option(shapes, tmp_path):
    proc = run_tool(
        [
            'train.py',
            shapes['config'],
            '--check',
            '--work-dir',
            tmp_path / 'work',
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.startswith('ok: ')
    assert not (tmp_path / 'work').exists()


def test_class_count_differing_from_the_dataset(shapes):
    cfg = _load(shapes)
    preflight_check(cfg, mode='train')  # 4 classes everywhere: fine
    cfg.model.roi_head.mask_head.num_classes = 80
    with pytest.raises(PreflightError) as err:
        preflight_check(cfg, mode='train')
    message = str(err.value)
    assert 'model.roi_head.mask_head.num_classes=80' in message
    assert (
        '4 classes' in message and 'circle, square, triangle, star' in message
    )


@pytest.mark.slow
def test_train_tool_class_count_mismatch(shapes, tmp_path):
    proc = run_tool(
        [
            'train.py',
            shapes['config'],
            '--check',
            '--cfg-options',
            'model.roi_head.bbox_head.num_classes=3',
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(
        proc, 'model.roi_head.bbox_head.num_classes=3', 'has 4 classes'
    )


def _config_with_ann(shapes, tmp_path, ann):
    """The tiny config with its train annotation file replaced by ``ann``."""
    config = tmp_path / 'ann.py'
    config.write_text(
        f'_base_ = {str(shapes["config"])!r}\n'
        'train_dataloader = dict(dataset=dict(\n'
        f'    ann_file={str(ann)!r}))\n'
    )
    return config


@pytest.mark.slow
def test_train_tool_annotation_file_not_json(shapes, tmp_path):
    ann = tmp_path / 'instances_train.json'
    ann.write_text('{"images": [}')
    proc = run_tool(
        [
            'train.py',
            _config_with_ann(shapes, tmp_path, ann),
            '--work-dir',
            tmp_path / 'work',
        ],
        cwd=tmp_path,
    )
    _assert_one_line_error(proc, str(ann), 'not valid JSON')


@pytest.mark.slow
def test_train_tool_reports_skipped_annotations(shapes, tmp_path):
    import json

    data = json.loads(
        (shapes['data'] / 'annotations' / 'instances_train.json').read_text()
    )
    first = data['annotations'][0]
    data['annotations'] += [
        dict(first, id=10**6, image_id=-1),  # unknown image
        dict(first, id=10**6 + 1, area=0),  # zero area
    ]
    ann = tmp_path / 'instances_train.json'
    ann.write_text(json.dumps(data))
    proc = run_tool(
        [
            'train.py',
            _config_with_ann(shapes, tmp_path, ann),
            '--work-dir',
            tmp_path / 'work',
            '--check',
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, explain(proc)
    warnings = [
        ln for ln in proc.stderr.splitlines() if ln.startswith('warning: ')
    ]
    assert len(warnings) == 2, explain(proc)
    assert 'image id not in "images"' in warnings[0]
    assert str(10**6) in warnings[0]
    assert 'zero-area' in warnings[1] and str(10**6 + 1) in warnings[1]


def test_missing_images_warn_for_training_and_stop_evaluation(
    shapes_copy, tmp_path
):
    data = shapes_copy
    config = write_config(tmp_path / 'c.py', data, max_epochs=1)
    cfg = Config.fromfile(str(config))
    train_image = sorted((data / 'train').glob('*.png'))[0]
    train_image.unlink()
    warnings = []
    preflight_check(cfg, 'train', warnings=warnings)
    skipped = [w for w in warnings if str(train_image) in w]
    assert len(skipped) == 1 and 'training skips them' in skipped[0]
    # the only other line: the config's 4-iteration warm-up is as long as
    # this one-epoch run (7 images, batch 2)
    others = [w for w in warnings if w not in skipped]
    assert len(others) == 1, others
    assert 'warms up for 4 iterations, as long as the whole run' in others[0]

    val_image = sorted((data / 'val').glob('*.png'))[0]
    val_image.unlink()
    with pytest.raises(PreflightError) as info:
        preflight_check(cfg, 'train')
    assert str(val_image) in str(info.value)
    assert 'val_dataloader.dataset' in str(info.value)


def test_second_evaluator_is_named_by_its_index(shapes, tmp_path):
    good = str(shapes['data'] / 'annotations' / 'instances_val.json')
    cfg = _load(
        shapes,
        val_evaluator=[
            dict(type='CocoMetric', metric='bbox', ann_file=good),
            dict(
                type='CocoMetric',
                metric='bbox',
                ann_file=str(tmp_path / 'nope.json'),
            ),
        ],
    )
    with pytest.raises(PreflightError, match=r'val_evaluator\.1\.ann_file'):
        preflight_check(cfg, 'train')


@pytest.mark.slow
def test_cfg_option_without_value_is_named(shapes, tmp_path):
    for tool in (
        ['train.py', shapes['config']],
        ['test.py', shapes['config'], tmp_path / 'e.pth'],
    ):
        proc = run_tool(
            [
                *tool,
                '--check',
                '--cfg-options',
                'train_cfg.max_epochs',
                'model.backbone.depth=18',
            ],
            cwd=tmp_path,
        )
        _assert_one_line_error(
            proc, "--cfg-options 'train_cfg.max_epochs'", 'KEY=VALUE'
        )


# --- pretrained backbone weights that do not fit ---------------------------


# the tiny config's quarter-width backbone
QUARTER = dict(stem_channels=16, base_channels=16)


def _backbone_checkpoint(tmp_path, name, prefix='', **kwargs):
    """A quarter-width ECAResNet-18's weights (random), saved under
    ``prefix``, with a classifier the backbone lacks."""
    model = MODELS.build(dict(type='ECAResNet', depth=18, **QUARTER, **kwargs))
    state = {prefix + k: v for k, v in model.state_dict().items()}
    state['fc.weight'] = torch.zeros(2, 128)
    torch.save(dict(state_dict=state), tmp_path / name)
    return str(tmp_path / name)


def _with_pretrained(shapes, checkpoint, prefix=None, **backbone):
    cfg = _load(shapes)
    cfg.model.backbone = dict(
        dict(type='ECAResNet', depth=18, eca_k_size=(3, 3, 5, 5), **QUARTER),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint),
        **backbone,
    )
    if prefix:
        cfg.model.backbone.init_cfg.prefix = prefix
    return cfg


@pytest.mark.parametrize(
    'backbone,expected',
    [
        # another ECA kernel size: names the key and both shapes
        (
            dict(eca_k_size=(3, 5, 5, 5)),
            [
                'layer2.0.eca.conv.weight: checkpoint (1, 1, 3) vs model '
                '(1, 1, 5)',
                'ECAResNet(depth=18, eca_k_size=(3, 5, 5, 5))',
                'eca_k_size',
            ],
        ),
        # another depth: names the first missing keys and the converter
        (
            dict(depth=34),
            [
                'missing in checkpoint',
                'layer1.2.conv1.weight',
                'tools/convert_weights.py',
            ],
        ),
    ],
)
def test_pretrained_backbone_that_does_not_fit_is_refused(
    shapes, tmp_path, backbone, expected
):
    """mmengine loads pretrained weights non-strictly and only logs what
    did not fit; the train preflight refuses them in one message."""
    ckpt = _backbone_checkpoint(tmp_path, 'r18.pth', eca_k_size=(3, 3, 5, 5))
    cfg = _with_pretrained(shapes, ckpt)
    cfg.model.backbone.update(backbone)
    with pytest.raises(CheckpointMismatchError) as info:
        preflight_check(cfg, 'train')
    message = str(info.value)
    assert message.startswith(f'backbone checkpoint {ckpt} does not fit ')
    for text in expected:
        assert text in message, message
    preflight_check(cfg, 'test')  # testing does not load it


def test_pretrained_backbone_under_a_prefix(shapes, tmp_path):
    """A detector's checkpoint: the backbone's weights under ``prefix``
    fit; with another kernel size the message names the prefix."""
    ckpt = _backbone_checkpoint(
        tmp_path, 'det.pth', 'backbone.', eca_k_size=(3, 3, 5, 5)
    )
    preflight_check(_with_pretrained(shapes, ckpt, 'backbone'), 'train')
    cfg = _with_pretrained(shapes, ckpt, 'backbone.', eca_k_size=7)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"det\.pth \(prefix 'backbone\.'\) does not fit "
        r'ECAResNet\(depth=18, eca_k_size=\(7, 7, 7, 7\)\): shape mismatch',
    ):
        preflight_check(cfg, 'train')


def test_plain_resnet_checkpoint_is_named_as_such(shapes, tmp_path):
    plain = MODELS.build(dict(type='ResNet', depth=18, **QUARTER))
    torch.save(plain.state_dict(), tmp_path / 'plain.pth')
    cfg = _with_pretrained(shapes, str(tmp_path / 'plain.pth'))
    with pytest.raises(CheckpointMismatchError, match='no ECA weights'):
        preflight_check(cfg, 'train')
