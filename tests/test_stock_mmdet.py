"""Drop-in with stock mmdet: a run's saved config and checkpoint work with
``init_detector``/``inference_detector``/``DetInferencer`` and our demo;
mmdet's own tools/train.py keeps the safety hooks and resumes; a user config
inherits a project config without a path into the checkout."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tools_testlib import (
    REPO,
    explain,
    run_stock_apis,
    run_tool,
    tool_env,
    write_config,
)

mmdet = pytest.importorskip('mmdet')

MMDET_TRAIN = Path(mmdet.__file__).parent / '.mim' / 'tools' / 'train.py'
SAFETY_HOOKS = ('NonFiniteLossHook', 'EpochSeedHook', 'SafeImageLoadingHook')


@pytest.fixture
def trained(trained_run):
    """The session's training of the tiny config with our tools/train.py
    (conftest.py): the config it saved and its last checkpoint."""
    return dict(
        trained_run,
        saved=trained_run['work'] / trained_run['config'].name,
        ckpt=trained_run['checkpoints'][-1],
    )


def test_saved_config_keeps_the_stock_image_loader(trained):
    from mmengine.config import Config

    cfg = Config.fromfile(str(trained['saved']))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.pipeline[0].type == 'LoadImageFromFile', key
    assert 'SafeLoadImageFromFile' not in trained['saved'].read_text()
    listed = [h['type'] for h in cfg.custom_hooks]
    assert set(SAFETY_HOOKS) <= set(listed)  # added by tools/train.py


@pytest.mark.slow
def test_stock_mmdet_apis_on_the_saved_config(trained):
    """What mmdet users do with a trained model, unchanged, on the config
    the run saved (a fresh process: nothing of ours is imported but what the
    config's custom_imports name)."""
    img = sorted((trained['data'] / 'val').glob('*.png'))[0]
    out = run_stock_apis(
        trained['saved'], trained['ckpt'], img, cwd=trained['root']
    )
    assert out['classes'] == ['circle', 'square', 'triangle', 'star']
    # the tiny config keeps every detection (score_thr=0): boxes exist
    assert out['path_n'] > 0 and out['path_n'] == out['array_n']
    assert out['same_boxes']
    assert out['inferencer_n'] == out['path_n'] and out['inferencer_boxes']


@pytest.mark.slow
def test_image_demo_on_the_saved_config(trained, tmp_path):
    img = sorted((trained['data'] / 'val').glob('*.png'))[0]
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / 'demo' / 'image_demo.py'),
            str(img),
            str(trained['saved']),
            '--weights',
            str(trained['ckpt']),
            '--out-dir',
            str(tmp_path / 'out'),
            '--no-progress',
        ],
        cwd=str(trained['root']),
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, explain(proc)
    assert (tmp_path / 'out' / 'vis' / img.name).is_file()
    pred = json.loads(
        (tmp_path / 'out' / 'preds' / f'{img.stem}.json').read_text()
    )
    assert len(pred['labels']) == len(pred['scores']) > 0


def _mmdet_train(config, work, cwd, *extra):
    env = tool_env()
    env.pop('PYTHONPATH')
    return subprocess.run(
        [
            sys.executable,
            str(MMDET_TRAIN),
            str(config),
            '--work-dir',
            str(work),
            *extra,
        ],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_mmdet_train_keeps_safety_hooks_and_resumes(
    trained_run, trained_work_copy, tmp_path
):
    """mmdet's own tools/train.py on a config that inherits the project's
    runtime: the safety hooks run and --resume reads the checkpoint our
    tools/train.py wrote (a copy of the session's run)."""
    config = write_config(
        tmp_path / 'tiny.py',
        trained_run['data'],
        max_epochs=trained_run['epochs'] + 1,
        inherit_hooks=True,
    )
    work = trained_work_copy
    proc = _mmdet_train(
        config,
        work,
        tmp_path,
        '--resume',
        '--cfg-options',
        'custom_hooks.0.enabled=False',
    )
    assert proc.returncode == 0, explain(proc)
    log = proc.stdout + proc.stderr
    for hook in SAFETY_HOOKS:
        assert hook in log, hook  # mmengine lists the hooks it runs
    assert f'resumed epoch: {trained_run["epochs"]}' in log, explain(proc)
    assert (work / f'epoch_{trained_run["epochs"] + 1}.pth').is_file()


USER_CONFIG = """
_base_ = __import__('eca_mmdet').config_path(
    'shapes/mask_rcnn_ecaresnet18_shapes.py')
model = dict(roi_head=dict(bbox_head=dict(num_classes=2),
                           mask_head=dict(num_classes=2)))
"""


def test_user_config_inherits_a_project_config_anywhere(tmp_path):
    from mmengine.config import Config

    path = tmp_path / 'elsewhere' / 'my_config.py'
    path.parent.mkdir()
    path.write_text(USER_CONFIG)
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.type == 'ECAResNet'
    assert cfg.model.backbone.depth == 18
    assert cfg.model.roi_head.bbox_head.num_classes == 2
    assert 'eca_mmdet.stack_fixes' in cfg.custom_imports.imports
    # the saved form needs no path either: it is the merged config
    dumped = tmp_path / 'dumped.py'
    cfg.dump(str(dumped))
    assert Config.fromfile(str(dumped)).model.backbone.type == 'ECAResNet'


def test_config_path_names_a_missing_config():
    import eca_mmdet

    with pytest.raises(FileNotFoundError, match='no_such.py'):
        eca_mmdet.config_path('no_such.py')


@pytest.mark.slow
def test_results_pickle_feeds_mmdet_confusion_matrix(trained, tmp_path):
    """``tools/test.py --out`` writes mmdet's results pickle (one entry per
    image, with its image id and predicted instances) and mmdet's own
    ``analysis_tools/confusion_matrix.py`` reads it."""
    import pickle

    from pycocotools.coco import COCO

    out = tmp_path / 'results.pkl'
    proc = run_tool(
        [
            'test.py',
            trained['saved'],
            trained['ckpt'],
            '--work-dir',
            tmp_path / 'eval',
            '--out',
            out,
        ],
        cwd=trained['root'],
    )
    assert proc.returncode == 0, explain(proc)
    with open(out, 'rb') as f:
        results = pickle.load(f)
    coco = COCO(str(trained['data'] / 'annotations' / 'instances_val.json'))
    assert sorted(r['img_id'] for r in results) == sorted(coco.getImgIds())
    for r in results:
        pred = r['pred_instances']
        n = len(pred['scores'])
        assert tuple(pred['bboxes'].shape) == (n, 4)
        assert len(pred['labels']) == n and len(pred['masks']) == n

    tool = MMDET_TRAIN.parent / 'analysis_tools' / 'confusion_matrix.py'
    env = tool_env()
    env['MPLBACKEND'] = 'Agg'
    proc = subprocess.run(
        [
            sys.executable,
            str(tool),
            str(trained['saved']),
            str(out),
            str(tmp_path / 'cm'),
            '--score-thr',
            '0.05',
        ],
        cwd=str(trained['root']),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, explain(proc)
    assert (tmp_path / 'cm' / 'confusion_matrix.png').stat().st_size > 0


@pytest.mark.slow
def test_out_must_be_a_pickle_name(trained, tmp_path):
    proc = run_tool(
        [
            'test.py',
            trained['saved'],
            trained['ckpt'],
            '--work-dir',
            tmp_path / 'eval',
            '--out',
            tmp_path / 'results.json',
        ],
        cwd=trained['root'],
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f'error: --out {tmp_path / "results.json"}: the results file must '
        'end with .pkl or .pickle'
    ], explain(proc)


@pytest.mark.slow
def test_wheel_ships_the_configs(tmp_path):
    """A non-editable install (a built wheel, unpacked outside the checkout)
    finds the project's configs in the package."""
    import shutil
    import zipfile

    src = tmp_path / 'src'
    src.mkdir()
    for name in ('setup.py', 'README.md', 'LICENSE'):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')
    for name in ('eca_mmdet', 'configs'):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    proc = subprocess.run(
        [
            sys.executable,
            '-m',
            'pip',
            'wheel',
            '-q',
            '--no-deps',
            '--no-build-isolation',
            '-w',
            str(tmp_path / 'dist'),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, explain(proc)
    (wheel,) = (tmp_path / 'dist').glob('eca_mmdet-*.whl')
    site = tmp_path / 'site'
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(site)
    shipped = {
        p.relative_to(REPO / 'configs').as_posix()
        for p in (REPO / 'configs').rglob('*.py')
    }
    assert {f'eca_mmdet/.mim/configs/{n}' for n in shipped} <= names
    env = tool_env()
    env['PYTHONPATH'] = str(site)
    proc = subprocess.run(
        [
            sys.executable,
            '-c',
            'import eca_mmdet; print(eca_mmdet.config_path'
            '("shapes/mask_rcnn_ecaresnet18_shapes.py"))',
        ],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.strip() == str(
        site
        / 'eca_mmdet'
        / '.mim'
        / 'configs'
        / 'shapes'
        / 'mask_rcnn_ecaresnet18_shapes.py'
    )
