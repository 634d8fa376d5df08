"""tools/plot_curves.py: per-epoch curves from mmengine's scalars.json,
resumed runs, several runs overlaid, one-line errors."""

import json
import subprocess
import sys

import pytest
from PIL import Image
from tools_testlib import REPO, explain, tool_env

pytest.importorskip('matplotlib')
from eca_mmdet.visualization.curves import (
    CurvesError,  # noqa: E402
    curve_panels,
    read_run_curves,
)


def _train_line(epoch, it, loss, lr):
    # the keys mmengine's LoggerHook writes for a Mask R-CNN step
    return dict(
        lr=lr,
        data_time=0.01,
        grad_norm=3.0,
        loss=loss,
        loss_rpn_cls=loss / 4,
        loss_mask=loss / 2,
        acc=90.0,
        time=0.3,
        epoch=epoch,
        iter=it,
        step=it,
    )


def _val_line(epoch, bbox, segm):
    return {
        'coco/bbox_mAP': bbox,
        'coco/bbox_mAP_50': bbox + 0.1,
        'coco/segm_mAP': segm,
        'data_time': 0.01,
        'time': 0.1,
        'step': epoch,
    }


def _write_log(work, stamp, lines):
    path = work / stamp / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    path.write_text(
        ''.join(json.dumps(x) + '\n' for x in lines) + '{"lr": 0.1, "loss"'
    )  # a line cut by a killed run


def _run(tmp_path):
    """2 iterations per epoch; killed after epoch 2 and resumed from
    epoch_1: the second log re-logs iterations 3-4 and adds 5-6."""
    work = tmp_path / 'eca'
    _write_log(
        work,
        '20260101_000000',
        [
            _train_line(1, 1, 4.0, 0.001),
            _train_line(1, 2, 3.0, 0.002),
            _val_line(1, 0.1, 0.2),
            _train_line(2, 3, 9.0, 0.9),
            _train_line(2, 4, 9.0, 0.9),
            _val_line(2, 0.0, 0.0),
        ],
    )
    _write_log(
        work,
        '20260101_010000',
        [
            _train_line(2, 3, 2.0, 0.002),
            _train_line(2, 4, 1.0, 0.002),
            _val_line(2, 0.3, 0.4),
            _train_line(3, 5, 1.0, 0.0002),
            _train_line(3, 6, 0.5, 0.0002),
            _val_line(3, 0.5, 0.6),
        ],
    )
    return work


def test_per_epoch_means_and_resumed_lines_win(tmp_path):
    run = read_run_curves(str(_run(tmp_path)))
    assert run.label == 'eca'
    assert run.train['loss'] == {1: 3.5, 2: 1.5, 3: 0.75}
    assert run.train['loss_mask'] == {1: 1.75, 2: 0.75, 3: 0.375}
    assert run.train['lr'] == pytest.approx({1: 0.0015, 2: 0.002, 3: 0.0002})
    assert run.val['coco/bbox_mAP'] == {1: 0.1, 2: 0.3, 3: 0.5}
    assert run.val['coco/segm_mAP'] == {1: 0.2, 2: 0.4, 3: 0.6}
    assert 'time' not in run.val and 'acc' not in run.train
    assert curve_panels([run]) == [
        'loss',
        'loss_mask',
        'loss_rpn_cls',
        'lr',
        'coco/bbox_mAP',
        'coco/segm_mAP',
    ]
    assert curve_panels([run], ['coco/bbox_*'])[-2:] == [
        'coco/bbox_mAP',
        'coco/bbox_mAP_50',
    ]


def _plot(args, cwd):
    return subprocess.run(
        [
            sys.executable,
            str(REPO / 'tools' / 'plot_curves.py'),
            *map(str, args),
        ],
        cwd=str(cwd),
        env=tool_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_two_runs_overlaid(tmp_path):
    eca = _run(tmp_path)
    plain = tmp_path / 'plain'
    _write_log(
        plain,
        '20260102_000000',
        [
            _train_line(1, 1, 5.0, 0.001),
            _train_line(1, 2, 4.0, 0.002),
            _val_line(1, 0.05, 0.1),
        ],
    )
    out = tmp_path / 'figs' / 'curves.png'
    out.parent.mkdir()
    proc = _plot(
        [eca, plain, '--labels', 'ECA', 'plain', '--out', out], tmp_path
    )
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.strip() == (
        f'{out}: loss, loss_mask, loss_rpn_cls, lr, coco/bbox_mAP, '
        'coco/segm_mAP for 2 run(s)'
    )
    with Image.open(out) as img:
        assert img.format == 'PNG'
        assert img.size == (3 * 420, 2 * 300)  # 3 x 2 panels at 100 dpi
        colors = img.convert('RGB').getcolors(1 << 20)
    # matplotlib's first two line colours (C0 blue, C1 orange) both drawn
    present = {c for _, c in colors}
    assert (31, 119, 180) in present and (255, 127, 14) in present
    assert not list(out.parent.glob('*.tmp*'))  # atomic write left no temp


def test_errors_are_one_line(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    out = tmp_path / 'c.png'
    for args, message in [
        (
            [empty],
            f'error: {empty} holds no training log '
            '(*/vis_data/scalars.json); is it the --work-dir of a '
            'tools/train.py run?',
        ),
        ([tmp_path / 'nope'], f'error: work dir not found: {tmp_path}/nope'),
        (
            [_run(tmp_path), '--labels', 'a', 'b'],
            'error: --labels: 2 label(s) for 1 work dir(s)',
        ),
    ]:
        proc = _plot([*args, '--out', out], tmp_path)
        assert proc.returncode == 1, explain(proc)
        assert proc.stderr.strip().splitlines() == [message], explain(proc)
    assert not out.exists()
    from eca_mmdet.visualization.curves import RunCurves, plot_curves

    only_val = RunCurves('x', val={'coco/bbox_mAP': {1: 0.5}})
    with pytest.raises(CurvesError, match='nothing to plot'):
        plot_curves([only_val], str(out), val_keys=['nothing*'])
    assert not out.exists()
