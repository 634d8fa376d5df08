"""ProgressGifHook (during training, after an interruption, disabled) and
tools/progress_gif.py (one frame per epoch checkpoint, frames differ)."""

import copy
import json
import os
import re
from types import SimpleNamespace

import numpy as np
import pytest
import tools_testlib as lib
from mmengine.hooks import Hook
from PIL import Image

import eca_mmdet  # noqa: F401
import eca_mmdet.hooks  # noqa: F401
from eca_mmdet.hooks import ProgressGifHook
from eca_mmdet.visualization import (
    epoch_checkpoints,
    format_caption,
    read_val_metrics,
    write_gif,
)
from eca_mmdet.visualization.progress import CAPTION_HEIGHT


def gif_frames(path):
    with Image.open(path) as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert('RGB')))
    return frames


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------
def test_epoch_checkpoints_numeric_order(tmp_path):
    for n in (10, 2, 1, 9):
        (tmp_path / f'epoch_{n}.pth').write_bytes(b'')
    (tmp_path / 'best_coco_bbox_mAP_epoch_3.pth').write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text('x')
    assert [e for e, _ in epoch_checkpoints(str(tmp_path))] == [1, 2, 9, 10]


def test_read_val_metrics_from_scalars(tmp_path):
    for stamp, lines in (
        (
            '20240101_000000',
            [
                dict(loss=1.0, step=5),
                {'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.05, 'step': 1},
                {'coco/bbox_mAP': 0.2, 'coco/segm_mAP': -1.0, 'step': 2},
            ],
        ),
        (
            '20240102_000000',
            [  # a resumed run redoes epoch 2
                {'coco/bbox_mAP': 0.25, 'coco/segm_mAP': 0.125, 'step': 2},
            ],
        ),
    ):
        d = tmp_path / stamp / 'vis_data'
        d.mkdir(parents=True)
        (d / 'scalars.json').write_text(
            '\n'.join(json.dumps(x) for x in lines) + '\n'
        )
    metrics = read_val_metrics(str(tmp_path))
    assert metrics == {
        1: dict(bbox=0.1, segm=0.05),
        2: dict(bbox=0.25, segm=0.125),
    }
    assert (
        format_caption(2, metrics[2])
        == 'epoch 2   bbox mAP 0.250   segm mAP 0.125'
    )
    assert format_caption(3, None).endswith('segm mAP n/a')
    assert 'bbox mAP 0.300' in format_caption(1, {'coco/bbox_mAP': 0.3})


def test_write_gif_keeps_every_frame(tmp_path):
    frames = [Image.new('RGB', (40, 30), (10 * i, 0, 0)) for i in range(4)]
    out = write_gif(frames, str(tmp_path / 'x.gif'), fps=4)
    got = gif_frames(out)
    assert len(got) == 4 and got[0].shape == (30, 40, 3)
    assert not any(p.name.startswith('x.gif.tmp') for p in tmp_path.iterdir())


def test_disabled_hook_does_nothing(tmp_path):
    hook = ProgressGifHook(enabled=False)
    runner = SimpleNamespace(work_dir=str(tmp_path), epoch=1, model=None)
    hook.before_train(runner)
    hook.after_val_epoch(runner, {'coco/bbox_mAP': 0.1})
    assert list(tmp_path.iterdir()) == []


def test_fresh_run_drops_stale_frames(tmp_path):
    frames = tmp_path / 'progress_frames'
    frames.mkdir()
    for n in (1, 2, 5):
        Image.new('RGB', (8, 8)).save(frames / f'epoch_{n:03d}.png')
    hook = ProgressGifHook()
    hook.before_train(SimpleNamespace(work_dir=str(tmp_path), epoch=2))
    assert sorted(p.name for p in frames.iterdir()) == [
        'epoch_001.png',
        'epoch_002.png',
    ]
    hook.before_train(SimpleNamespace(work_dir=str(tmp_path), epoch=0))
    assert list(frames.iterdir()) == []


# ----------------------------------------------------------------------------
# The hook during training
# ----------------------------------------------------------------------------
def test_hook_writes_gif_during_training(trained_run):
    work = trained_run['work']
    n_ckpt = len(trained_run['checkpoints'])
    assert n_ckpt == trained_run['epochs'] >= 2
    frames = sorted(p.name for p in (work / 'progress_frames').iterdir())
    assert frames == [f'epoch_{e:03d}.png' for e in range(1, n_ckpt + 1)]
    got = gif_frames(work / 'progress.gif')
    assert len(got) == n_ckpt
    # 2 images in a row of GIF_SIZE cells under the caption strip
    assert got[0].shape[0] == lib.GIF_SIZE + 4 + CAPTION_HEIGHT
    assert all(f.shape == got[0].shape for f in got)
    # the hook's timing line of every epoch, in the training's log
    log = trained_run['train'].stdout + trained_run['train'].stderr
    timings = re.findall(
        r'ProgressGifHook: epoch (\d+) frame \+ progress\.gif in '
        r'([0-9.]+)s',
        log,
    )
    assert [int(e) for e, _ in timings] == list(range(1, n_ckpt + 1)), log
    assert all(float(s) > 0 for _, s in timings)


def test_hook_restores_train_mode_and_test_cfg(trained_run, tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.logging import MMLogger

    from eca_mmdet.apis import load_detector

    model = load_detector(
        str(trained_run['config']), str(trained_run['checkpoints'][-1])
    )
    model.train()
    thr = model.roi_head.test_cfg.score_thr
    cfg = lib.run_config(trained_run['config'], tmp_path / 'unused')
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    sent = []  # what the runner's visualizer passes to its vis_backends
    visualizer = SimpleNamespace(
        add_image=lambda name, image, step: sent.append((name, image, step))
    )
    runner = SimpleNamespace(
        val_loop=SimpleNamespace(dataloader=SimpleNamespace(dataset=dataset)),
        model=model,
        epoch=7,
        work_dir=str(tmp_path),
        visualizer=visualizer,
        logger=MMLogger.get_instance('test_progress_gif'),
    )
    hook = ProgressGifHook(num_images=1, size=64, score_thr=0.5)
    hook.before_train(runner)
    hook.after_val_epoch(runner, {'coco/bbox_mAP': 0.5})
    assert model.training
    assert model.roi_head.test_cfg.score_thr == thr
    assert (tmp_path / 'progress_frames' / 'epoch_007.png').is_file()
    assert len(gif_frames(tmp_path / 'progress.gif')) == 1
    assert [t['epoch'] for t in hook.timings] == [7]
    # the frame also went to the backends (TensorBoard, W&B, ...)
    assert [(name, step) for name, _, step in sent] == [('progress', 7)]
    frame = np.asarray(
        Image.open(tmp_path / 'progress_frames' / 'epoch_007.png').convert(
            'RGB'
        )
    )
    np.testing.assert_array_equal(sent[0][1], frame)


class _StopInEpoch(Hook):
    """Simulates a crash at the start of epoch ``epoch`` (1-based)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def before_train_epoch(self, runner):
        if runner.epoch + 1 == self.epoch:
            raise KeyboardInterrupt('simulated interruption')


def test_interrupted_run_keeps_gif_of_completed_epochs(trained_run, tmp_path):
    hook = dict(type='ProgressGifHook', num_images=1, size=64, score_thr=0.05)
    cfg = lib.run_config(
        trained_run['config'], tmp_path / 'work', custom_hooks=[hook]
    )
    cfg.train_cfg.max_epochs = 3
    with pytest.raises(KeyboardInterrupt):
        lib.train_in_process(cfg, extra_hooks=[_StopInEpoch(2)])
    gif = tmp_path / 'work' / 'progress.gif'
    assert gif.is_file()
    assert len(gif_frames(gif)) == 1
    assert sorted(
        p.name for p in (tmp_path / 'work' / 'progress_frames').iterdir()
    ) == ['epoch_001.png']
    assert not [p for p in (tmp_path / 'work').iterdir() if '.tmp' in p.name]


# ----------------------------------------------------------------------------
# tools/progress_gif.py
# ----------------------------------------------------------------------------
def _progress_gif(trained_run, images, out, *options):
    """The frames tools/progress_gif.py writes for the session's run."""
    proc = lib.run_script(
        'tools/progress_gif.py',
        trained_run['config'],
        trained_run['work'],
        *images,
        '--out',
        out,
        '--fps',
        '3',
        '--cell-size',
        '80',
        '--pred-score-thr',
        '0.05',
        *options,
    )
    assert proc.returncode == 0, lib.explain(proc)
    return gif_frames(out)


def test_progress_gif_tool(trained_run, tmp_path):
    val = sorted((trained_run['data'] / 'val').glob('*.png'))[:2]
    frames = _progress_gif(trained_run, val, tmp_path / 'progress.gif')
    assert len(frames) == len(trained_run['checkpoints'])
    assert all(f.shape == frames[0].shape for f in frames)
    # the predictions (below the caption) change between epochs
    body = [f[CAPTION_HEIGHT:].astype(int) for f in frames]
    diffs = [np.abs(a - b).mean() for a, b in zip(body, body[1:])]
    assert max(diffs) > 0.5, diffs
    # the captions differ as well (epoch number)
    heads = [f[:CAPTION_HEIGHT] for f in frames]
    assert not np.array_equal(heads[0], heads[1])
    metrics = read_val_metrics(str(trained_run['work']))
    assert sorted(metrics) == list(range(1, len(frames) + 1))
    assert all(set(m) == {'bbox', 'segm'} for m in metrics.values())

    # --max-instances 1: a frame changes where an image had more than one
    # prediction above the threshold (counted with the API)
    from eca_mmdet.apis import load_detector, predict

    model = load_detector(
        str(trained_run['config']), str(trained_run['checkpoints'][-1])
    )
    above = [
        int((s.pred_instances.scores > 0.05).sum())
        for s in predict(model, [str(p) for p in val])
    ]
    one = _progress_gif(
        trained_run, val, tmp_path / 'one.gif', '--max-instances', '1'
    )
    last, last_one = frames[-1], one[-1]
    assert np.array_equal(last, last_one) == (max(above) <= 1), above


@pytest.mark.slow
def test_progress_gif_tool_errors(tmp_path, shapes_data, tiny_config):
    for options, message in [
        ((), f'error: no epoch_*.pth in {tmp_path}'),
        (
            ('--max-instances', '-1'),
            'error: --max-instances must be >= 0 (0: all), got -1',
        ),
    ]:
        proc = lib.run_script(
            'tools/progress_gif.py',
            tiny_config,
            tmp_path,
            shapes_data / 'val',
            '--out',
            tmp_path / 'x.gif',
            *options,
        )
        assert proc.returncode == 1
        assert 'Traceback' not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == message
        assert not os.path.exists(tmp_path / 'x.gif')


# ----------------------------------------------------------------------------
# The cap on the drawn instances
# ----------------------------------------------------------------------------
def _sample_with(n, scores, size=64):
    """A DetDataSample with ``n`` predicted instances (boxes, masks) of the
    given scores on a ``size`` x ``size`` image."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, size / 2, (n, 2))
    wh = rng.uniform(4, size / 2, (n, 2))
    masks = np.zeros((n, size, size), bool)
    for i, (x, y) in enumerate(xy.astype(int)):
        masks[i, y : y + 4, x : x + 4] = True
    sample = DetDataSample(
        metainfo=dict(ori_shape=(size, size), img_shape=(size, size))
    )
    sample.pred_instances = InstanceData(
        bboxes=torch.as_tensor(np.hstack([xy, xy + wh]), dtype=torch.float32),
        labels=torch.as_tensor(rng.integers(0, 4, n)),
        scores=torch.as_tensor(np.asarray(scores, np.float32)),
        masks=torch.from_numpy(masks),
    )
    return sample


def _counting_visualizer(monkeypatch):
    """A visualizer recording the scores of what it draws, and a list of
    how many predictions each ``resize_sample`` call (the per-instance
    work before drawing: copying and resizing masks) receives."""
    import eca_mmdet.visualization.progress as progress
    from eca_mmdet.visualization import StableColorDetVisualizer

    vis = StableColorDetVisualizer(name='test_progress_cap').set_meta(
        dict(classes=lib.CLASSES)
    )
    drawn, resized = [], []
    draw = vis.draw_instances

    def counting_draw(image, instances):
        drawn.append(sorted(instances.scores.tolist(), reverse=True))
        return draw(image, instances)

    resize = progress.resize_sample

    def counting_resize(image, sample, size):
        resized.append(len(sample.pred_instances))
        return resize(image, sample, size)

    monkeypatch.setattr(vis, 'draw_instances', counting_draw)
    monkeypatch.setattr(progress, 'resize_sample', counting_resize)
    return vis, drawn, resized


def test_frame_draws_the_top_max_instances_only(monkeypatch):
    from eca_mmdet.visualization import compose_frame

    vis, drawn, resized = _counting_visualizer(monkeypatch)
    image = np.full((64, 64, 3), 128, np.uint8)
    scores = np.linspace(0.01, 0.99, 100)[
        np.random.default_rng(1).permutation(100)
    ]
    for n_undrawn in (0, 90):  # 10 or 100 instances, 7 drawn either way
        kept = np.sort(scores)[::-1][: 10 + n_undrawn]
        sample = _sample_with(len(kept), kept)
        compose_frame(
            vis,
            [image],
            [sample],
            'epoch 1',
            size=64,
            score_thr=0.3,
            max_instances=7,
        )
    expect = [round(s, 5) for s in np.sort(scores)[::-1][:7]]
    assert [[round(s, 5) for s in d] for d in drawn] == [expect, expect]
    # the undrawn 90 are neither copied nor resized
    assert resized == [7, 7]
    # max_instances=None: everything above score_thr (as before the cap)
    drawn.clear()
    compose_frame(
        vis,
        [image],
        [_sample_with(100, scores)],
        'e',
        size=64,
        score_thr=0.3,
        max_instances=None,
    )
    assert len(drawn[0]) == int((scores > 0.3).sum())


def test_frame_says_when_nothing_or_not_all_is_shown(monkeypatch):
    from eca_mmdet.visualization import compose_frame
    from eca_mmdet.visualization.progress import frame_note

    assert frame_note(0, 0, 0.3) == 'nothing > 0.30'
    assert frame_note(57, 10, 0.3) == 'top 10 (more > 0.30)'
    assert frame_note(4, 4, 0.3) is None and frame_note(None, 0, 0.3) is None
    vis, drawn, _ = _counting_visualizer(monkeypatch)
    grey = np.full((64, 64, 3), 128, np.uint8)
    frames = [
        np.asarray(
            compose_frame(
                vis,
                [grey],
                [_sample_with(5, [s] * 5)],
                'epoch 1',
                size=64,
                score_thr=0.3,
                max_instances=10,
            )
        )
        for s in (0.1, 0.2)  # an untrained model: nothing above 0.3
    ]
    assert drawn == [[], []]
    body = frames[0][CAPTION_HEIGHT:]
    # the image is still there, with the epoch caption above it ...
    assert (body == 128).all(-1).mean() > 0.5
    np.testing.assert_array_equal(frames[0], frames[1])
    # ... and a note (white on black) in the cell's bottom rows
    rows = np.nonzero((body == 0).all(-1).any(1))[0]
    assert rows.size and rows.min() > body.shape[0] // 2
    assert (body[rows] > 200).all(-1).any()


def test_hook_heads_run_on_the_drawn_instances_only(tiny_config, tmp_path):
    """A random tiny detector (rcnn score_thr 0, max_per_img 20): while
    the hook predicts, the mask head sees max_instances + 1 boxes per
    image, not 20, and the frame draws max_instances per image."""
    import torch
    from mmdet.registry import DATASETS
    from mmengine.logging import MMLogger

    from eca_mmdet.apis import load_detector

    torch.manual_seed(0)
    model = load_detector(str(tiny_config))
    cfg = lib.run_config(tiny_config, tmp_path / 'unused')
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    rois = []
    mask_forward = model.roi_head.mask_head.forward

    def counting(x):
        rois.append(len(x))
        return mask_forward(x)

    model.roi_head.mask_head.forward = counting
    runner = SimpleNamespace(
        val_loop=SimpleNamespace(dataloader=SimpleNamespace(dataset=dataset)),
        model=model,
        epoch=1,
        work_dir=str(tmp_path),
        visualizer=SimpleNamespace(add_image=lambda *a, **k: None),
        logger=MMLogger.get_instance('test_progress_gif_cap'),
    )
    rcnn = model.roi_head.test_cfg
    assert (rcnn.score_thr, rcnn.max_per_img) == (0.0, 20)
    hook = ProgressGifHook(
        num_images=2, size=64, score_thr=0.0, max_instances=3
    )
    hook.before_train(runner)
    hook._training = True
    hook.render_frame(runner)
    drawn_by_head = list(rois)
    # the same model and images without the hook's limits
    with torch.no_grad():
        outputs = model.test_step(copy.deepcopy(hook._samples[1]))
    assert [len(o.pred_instances) for o in outputs] == [20, 20]
    assert rois[len(drawn_by_head) :] == [40]
    assert drawn_by_head == [2 * (3 + 1)]
    assert (rcnn.score_thr, rcnn.max_per_img) == (0.0, 20)  # restored
    with pytest.raises(Exception, match='max_instances must be >= 1'):
        ProgressGifHook(max_instances=0)
    with pytest.raises(
        Exception, match=r'score_thr must be a score in \[0, 1\]'
    ):
        ProgressGifHook(score_thr=1.5)
