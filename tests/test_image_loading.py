"""Unreadable images: training skips them (logged, counted), evaluation stops
with one line naming the file."""

import logging
import shutil

import cv2
import numpy as np
import pytest
from tools_testlib import explain, run_tool, write_config

pytest.importorskip('mmdet')

from eca_mmdet.datasets import (
    ImageReadError,  # noqa: E402
    SafeLoadImageFromFile,
    guard_image_loading,
)


def _image_files(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    files = {}
    for ext in ('png', 'jpg'):
        data = cv2.imencode(f'.{ext}', img)[1].tobytes()
        (tmp_path / f'ok.{ext}').write_bytes(data)
        (tmp_path / f'truncated.{ext}').write_bytes(data[: len(data) // 2])
        files[ext] = tmp_path / f'ok.{ext}'
    (tmp_path / 'garbage.jpg').write_bytes(b'not an image at all')
    (tmp_path / 'empty.png').write_bytes(b'')
    return img, files


@pytest.mark.parametrize(
    'name,reason',
    [
        ('missing.png', 'file not found'),
        ('truncated.png', 'corrupt or truncated'),
        ('truncated.jpg', 'corrupt or truncated'),
        ('garbage.jpg', 'corrupt or truncated'),
        ('empty.png', 'empty file (0 bytes)'),
    ],
)
def test_unreadable_image_is_skipped_or_named(tmp_path, name, reason):
    _image_files(tmp_path)
    log = tmp_path / 'skipped_images.txt'
    skip = SafeLoadImageFromFile(skip_unreadable=True, skip_log=str(log))
    path = str(tmp_path / name)
    assert skip.transform(dict(img_path=path)) is None
    assert skip.transform(dict(img_path=path)) is None  # listed once
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(path + '\t')
    assert reason in lines[0]

    stop = SafeLoadImageFromFile(skip_unreadable=False)
    with pytest.raises(ImageReadError) as info:
        stop.transform(dict(img_path=path))
    assert str(info.value).startswith(f'cannot read image {path}: ')


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_skip_count_is_of_distinct_files(tmp_path):
    """The same broken file skipped in every epoch, by several workers
    (loader copies sharing the log), counts once."""
    from mmengine.logging import MMLogger

    _image_files(tmp_path)
    log = tmp_path / 'skipped_images.txt'
    workers = [SafeLoadImageFromFile(skip_log=str(log)) for _ in range(2)]
    bad = [str(tmp_path / 'garbage.jpg'), str(tmp_path / 'empty.png')]
    logger, collect = MMLogger.get_current_instance(), _Collect()
    logger.addHandler(collect)
    try:
        for _ in range(3):  # epochs
            for worker in workers:
                assert worker.transform(dict(img_path=bad[0])) is None
        assert workers[1].transform(dict(img_path=bad[1])) is None
    finally:
        logger.removeHandler(collect)
    listed = [ln.split('\t')[0] for ln in log.read_text().splitlines()]
    assert listed == bad
    assert len(collect.messages) == 7
    assert '(1 distinct image(s) skipped in this run' in collect.messages[5]
    assert '(2 distinct image(s) skipped in this run' in collect.messages[6]


def test_image_of_another_size_than_annotated(tmp_path):
    """Its boxes and masks would not fit (polygon masks silently clipped,
    RLE masks crash): training skips it, evaluation names both sizes."""
    _, files = _image_files(tmp_path)
    path = str(files['png'])  # 50x40
    results = dict(img_path=path, height=48, width=64)
    log = tmp_path / 'skipped_images.txt'
    skip = SafeLoadImageFromFile(skip_log=str(log))
    assert skip.transform(dict(results)) is None
    assert log.read_text() == (
        f'{path}\tthe image is 50x40 pixels but its annotation says 64x48 '
        '(width x height); its boxes and masks would not fit it\n'
    )
    with pytest.raises(ImageReadError) as info:
        SafeLoadImageFromFile(skip_unreadable=False).transform(dict(results))
    assert str(info.value).startswith(
        f'cannot use image {path}: the image is 50x40 pixels'
    )
    fits = dict(results, height=40, width=50)
    assert skip.transform(fits)['img'].shape == (40, 50, 3)


def test_readable_images_load_as_before(tmp_path):
    img, files = _image_files(tmp_path)
    out = SafeLoadImageFromFile().transform(dict(img_path=str(files['png'])))
    assert np.array_equal(out['img'], img)
    assert out['img_shape'] == (40, 50)


def test_guard_swaps_built_loaders_keeping_their_settings(
    shapes_data, tmp_path
):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.dataset import ConcatDataset

    register_all_modules()
    cfg = Config.fromfile(str(write_config(tmp_path / 'c.py', shapes_data)))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.pipeline[0].update(to_float32=True, color_type='grayscale')
    a, b = DATASETS.build(ds_cfg), DATASETS.build(ds_cfg)
    wrapped = ConcatDataset([a, b])
    log = str(tmp_path / 'skipped.txt')
    assert guard_image_loading(wrapped, True, log) == 2
    for ds in (a, b):
        step = ds.pipeline.transforms[0]
        assert type(step) is SafeLoadImageFromFile
        assert step.skip_unreadable and step.skip_log == log
        assert step.to_float32 and step.color_type == 'grayscale'
    # already guarded loaders are left alone; the config is not touched
    assert guard_image_loading(wrapped, False) == 0
    assert ds_cfg.pipeline[0].type == 'LoadImageFromFile'
    assert (
        type(DATASETS.build(ds_cfg).pipeline.transforms[0])
        is LoadImageFromFile
    )
    sample = a[0]
    assert sample['inputs'].shape[0] == 1  # grayscale, as configured


@pytest.fixture(scope='module')
def broken_shapes(tmp_path_factory, shapes_data):
    """A copy of the tiny set with one truncated train image and one
    truncated val image, and a train image of another size than
    annotated."""
    root = tmp_path_factory.mktemp('broken')
    data = shutil.copytree(shapes_data, root / 'shapes')
    broken = {}
    for split in ('train', 'val'):
        victim = sorted((data / split).glob('*.png'))[1]
        victim.write_bytes(victim.read_bytes()[:200])
        broken[split] = victim
    # a 1x1 placeholder (e.g. a failed download) where a 64x64 image was
    resized = sorted((data / 'train').glob('*.png'))[2]
    cv2.imwrite(str(resized), np.full((1, 1, 3), 255, np.uint8))
    broken['resized'] = resized
    config = write_config(root / 'tiny.py', data, max_epochs=2)
    return dict(root=root, data=data, config=config, broken=broken)


@pytest.mark.slow
def test_training_skips_and_counts_a_truncated_image(broken_shapes):
    work = broken_shapes['root'] / 'work'
    proc = run_tool(
        ['train.py', broken_shapes['config'], '--work-dir', work],
        cwd=broken_shapes['root'],
    )
    assert proc.returncode == 0, explain(proc)
    victim = str(broken_shapes['broken']['train'])
    resized = str(broken_shapes['broken']['resized'])
    out = proc.stdout + proc.stderr
    assert f'skipping training image {victim}' in out, explain(proc)
    assert (
        f'skipping training image {resized}: the image is 1x1 pixels but '
        'its annotation says 64x64' in out
    )
    assert '2 distinct image(s) skipped in this run' in out
    # two epochs, each file listed (and counted) once
    listed = (work / 'skipped_images.txt').read_text().splitlines()
    assert sorted(ln.split('\t')[0] for ln in listed) == sorted(
        [victim, resized]
    ), listed
    assert '3 distinct' not in out
    assert (work / 'epoch_2.pth').is_file()
    assert victim in (next(work.glob('*/*.log'))).read_text()


@pytest.mark.parametrize('workers', [0, 1])
def test_evaluation_stops_naming_a_truncated_image(
    broken_shapes, trained_run, tmp_path, workers
):
    ckpt = trained_run['checkpoints'][0]  # the same model, trained
    proc = run_tool(
        [
            'test.py',
            broken_shapes['config'],
            ckpt,
            '--work-dir',
            tmp_path / 'out',
            '--cfg-options',
            f'test_dataloader.num_workers={workers}',
            f'test_dataloader.persistent_workers={workers > 0}',
        ],
        cwd=broken_shapes['root'],
    )
    assert proc.returncode == 1, explain(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error')]
    victim = str(broken_shapes['broken']['val'])
    assert errors == [
        f'error: cannot read image {victim}: not a decodable '
        'image (corrupt or truncated)'
    ], explain(proc)
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out' / 'metrics.json').exists()
