"""End to end: tools/train.py and tools/test.py on a tiny generated shapes set.

The session's 2-epoch training (``trained_run`` in conftest.py) is shared by
the tests: the test tool's metrics against an independent pycocotools
evaluation, resuming, and loading our own checkpoints with the allow-list
of eca_mmdet.engine.safe_pickle.
"""

import hashlib
import re
import shutil

import pytest
import torch
from tools_testlib import (
    BATCH,
    NUM_TRAIN,
    explain,
    read_json,
    run_tool,
)

pytest.importorskip('mmdet')
pycocotools = pytest.importorskip('pycocotools')

METRIC_ITEMS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def _epoch_logged(log, epoch):
    """mmengine logs train iterations as ``Epoch(train)  [3][2/4]``."""
    return re.search(rf'Epoch\(train\)\s*\[{epoch}\]\[', log) is not None


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.torch21
def test_train_writes_checkpoints(trained_run):
    work = trained_run['work']
    for epoch in (1, 2):
        assert (work / f'epoch_{epoch}.pth').is_file()
    assert (
        (work / 'last_checkpoint').read_text().strip().endswith('epoch_2.pth')
    )
    out = trained_run['train'].stdout + trained_run['train'].stderr
    assert _epoch_logged(out, 2)
    assert 'Traceback' not in out


@pytest.mark.torch21
def test_test_tool_metrics_match_pycocotools(trained_run, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out_dir = tmp_path / 'test_out'
    proc = run_tool(
        [
            'test.py',
            trained_run['config'],
            trained_run['work'] / 'epoch_2.pth',
            '--work-dir',
            out_dir,
            '--show-dir',
            out_dir / 'vis',
        ],
        cwd=trained_run['root'],
    )
    assert proc.returncode == 0, explain(proc)
    log = proc.stdout + proc.stderr
    assert 'category' in log and 'circle' in log  # mmdet's per-class table
    # --show-dir: one rendering per val image, plus the contact sheet
    val_images = read_json(
        trained_run['data'] / 'annotations' / 'instances_val.json'
    )['images']
    rendered = sorted(p.name for p in (out_dir / 'vis').glob('*.png'))
    assert 'contact_sheet.png' in rendered
    assert len(rendered) == len(val_images) + 1

    metrics = read_json(out_dir / 'metrics.json')
    assert isinstance(metrics, dict)
    assert all(not isinstance(v, (dict, list)) for v in metrics.values())

    ann_file = trained_run['data'] / 'annotations' / 'instances_val.json'
    gt = COCO(str(ann_file))
    gt_cat_ids = set(gt.getCatIds())
    assert gt_cat_ids != set(range(len(gt_cat_ids)))  # non-contiguous ids

    for iou_type in ('bbox', 'segm'):
        dets = read_json(out_dir / f'results.{iou_type}.json')
        assert dets, f'no {iou_type} detections written'
        # every detection carries a category id of the annotation file
        det_cats = {d['category_id'] for d in dets}
        assert det_cats <= gt_cat_ids, (det_cats, gt_cat_ids)
        assert {d['image_id'] for d in dets} <= set(gt.getImgIds())
        if iou_type == 'segm':
            # COCO's segm protocol: instance areas are mask areas, so drop
            # the boxes (pycocotools would use box areas otherwise)
            for d in dets:
                d.pop('bbox', None)
        coco_eval = COCOeval(gt, gt.loadRes(dets), iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        for i, item in enumerate(METRIC_ITEMS):
            key = f'coco/{iou_type}_{item}'
            assert key in metrics, sorted(metrics)
            # mmdet reports each stat rounded to 3 decimals
            expected = float(f'{coco_eval.stats[i]:.3f}')
            assert metrics[key] == expected, (
                key,
                metrics[key],
                coco_eval.stats[i],
            )


def _digests(work):
    """The digests of a work dir's epoch checkpoints."""
    return {p.name: _digest(p) for p in work.glob('epoch_*.pth')}


@pytest.fixture(scope='module')
def resumed(trained_run, tmp_path_factory):
    """The session's run resumed into epoch 3 from a copy of its work dir
    (``train.py --resume``), then tested with ``--show-dir``: both
    processes, the digests of the copied checkpoints, and the files of the
    session's directory and of this fixture's directory before and after."""
    base = tmp_path_factory.mktemp('resumed')
    root_before = _tree(trained_run['root'])
    work = shutil.copytree(trained_run['work'], base / 'work')
    # last_checkpoint holds the absolute path of the original run: point it
    # at the copy, as moving a work dir would require
    (work / 'last_checkpoint').write_text(str(work / 'epoch_2.pth'))
    digests = _digests(work)
    out = base / 'out'
    base_before = _tree(base)
    train = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--work-dir',
            work,
            '--resume',
            '--cfg-options',
            'train_cfg.max_epochs=3',
        ],
        cwd=trained_run['root'],
    )
    assert train.returncode == 0, explain(train)
    test = run_tool(
        [
            'test.py',
            trained_run['config'],
            work / 'epoch_3.pth',
            '--work-dir',
            out,
            '--show-dir',
            out / 'vis',
        ],
        cwd=trained_run['root'],
    )
    return dict(
        work=work,
        digests=digests,
        train=train,
        test=test,
        root_before=root_before,
        root_after=_tree(trained_run['root']),
        base=base,
        base_before=base_before,
        base_after=_tree(base),
    )


@pytest.mark.torch21
def test_resume_continues_from_epoch_2(resumed):
    work, before, proc = resumed['work'], resumed['digests'], resumed['train']
    log = proc.stdout + proc.stderr
    assert 'resumed epoch: 2' in log, explain(proc)
    assert _epoch_logged(log, 3)
    assert not _epoch_logged(log, 1) and not _epoch_logged(log, 2)

    ckpt = torch.load(
        work / 'epoch_3.pth', map_location='cpu', weights_only=False
    )
    first = torch.load(
        work / 'epoch_2.pth', map_location='cpu', weights_only=False
    )
    assert ckpt['meta']['epoch'] == 3
    iters = first['meta']['iter'] // 2
    assert iters >= 1
    assert ckpt['meta']['iter'] == 3 * iters
    # the earlier checkpoints were neither rewritten nor removed
    assert {p: _digest(work / p) for p in before} == before


def test_resumed_run_reaches_the_uninterrupted_weights(trained_run, tmp_path):
    """Resume the fixture's run from epoch_1.pth: epoch 2 must end with the
    very weights of the run that never stopped (EpochSeedHook reseeds the
    samplers' generators per epoch; num_workers=0, one thread)."""
    work = tmp_path / 'resumed'
    work.mkdir()
    shutil.copy(trained_run['work'] / 'epoch_1.pth', work / 'epoch_1.pth')
    proc = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--work-dir',
            work,
            '--resume',
            work / 'epoch_1.pth',
        ],
        cwd=trained_run['root'],
    )
    assert proc.returncode == 0, explain(proc)
    assert 'resumed epoch: 1' in proc.stdout + proc.stderr, explain(proc)

    def state(path):
        return torch.load(path, map_location='cpu', weights_only=False)[
            'state_dict'
        ]

    resumed = state(work / 'epoch_2.pth')
    uninterrupted = state(trained_run['work'] / 'epoch_2.pth')
    start = state(work / 'epoch_1.pth')
    assert resumed.keys() == uninterrupted.keys()
    differing = [
        k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])
    ]
    assert not differing, differing[:5]
    # and epoch 2 did train: the weights moved from epoch 1's
    assert any(
        not torch.equal(resumed[k], start[k])
        for k in resumed
        if resumed[k].is_floating_point()
    )


@pytest.mark.slow
def test_auto_resume_without_checkpoint_starts_from_scratch(
    tiny_config, tmp_path
):
    work = tmp_path / 'empty_work'
    proc = run_tool(
        [
            'train.py',
            tiny_config,
            '--work-dir',
            work,
            '--resume',
            '--cfg-options',
            'train_cfg.max_epochs=1',
        ],
        cwd=tiny_config.parent,
    )
    assert proc.returncode == 0, explain(proc)
    assert (work / 'epoch_1.pth').is_file()


@pytest.mark.torch21
def test_training_checkpoint_needs_exactly_the_allow_list(
    trained_run, monkeypatch
):
    import numpy as np
    from mmengine.runner.checkpoint import CheckpointLoader
    from torch import _weights_only_unpickler

    import eca_mmdet.engine as engine
    from eca_mmdet.engine import safe_pickle

    ckpt = trained_run['work'] / 'epoch_2.pth'
    # torch's own weights_only=True refuses it ...
    with pytest.raises(Exception, match='HistoryBuffer'):
        torch.load(ckpt, map_location='cpu', weights_only=True)
    # ... because of the globals it names beyond torch's defaults, which are
    # exactly ours (numpy's module spelled as the running numpy pickles it)
    torch_defaults = set(_weights_only_unpickler._get_allowed_globals())
    extra = set(safe_pickle.checkpoint_global_names(str(ckpt)))
    extra -= torch_defaults
    numpy2 = int(np.__version__.split('.')[0]) >= 2
    core = 'numpy._core.' if numpy2 else 'numpy.core.'
    ours = {
        name
        for name in engine.safe_checkpoint_global_names()
        if name.startswith(core)
        or not name.startswith(('numpy.core.', 'numpy._core.'))
    }
    assert extra == ours - torch_defaults
    find_unsafe = getattr(
        torch.serialization, 'get_unsafe_globals_in_checkpoint', None
    )
    if find_unsafe is not None:  # torch >= 2.6: torch's own reading
        assert set(find_unsafe(str(ckpt))) == extra
    # ... and every one of them is needed
    full = safe_pickle.safe_checkpoint_globals()
    for name in sorted(extra):
        less = {k: v for k, v in full.items() if k != name}
        monkeypatch.setattr(
            safe_pickle, 'safe_checkpoint_globals', lambda less=less: less
        )
        with pytest.raises(engine.UnsafeCheckpointError) as info:
            engine.safe_torch_load(ckpt, map_location='cpu')
        assert name in info.value.globals, info.value.globals
    monkeypatch.undo()

    engine.enable_stack_fixes()
    loaded = CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
    assert loaded['meta']['epoch'] == 2
    assert {
        'state_dict',
        'optimizer',
        'message_hub',
        'param_schedulers',
    } <= set(loaded)
    direct = engine.safe_torch_load(ckpt, map_location='cpu')
    sd = direct['state_dict']
    assert any(k.startswith('backbone.') for k in sd)
    for k, v in loaded['state_dict'].items():
        assert torch.equal(v, sd[k])
    # the test set was used by the fixture: keep NUM_TRAIN/BATCH meaningful
    assert loaded['meta']['iter'] <= 2 * (NUM_TRAIN // BATCH)


class _CreateFile:
    """Pickles as ``open(path, 'w')``: unpickling it creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def test_test_tool_refuses_planted_payload(trained_run, tmp_path):
    target = tmp_path / 'pwned'
    good = torch.load(
        trained_run['work'] / 'epoch_1.pth',
        map_location='cpu',
        weights_only=False,
    )
    good['meta']['payload'] = _CreateFile(target)
    evil = tmp_path / 'epoch_evil.pth'
    torch.save(good, evil)
    out = tmp_path / 'out'
    proc = run_tool(
        ['test.py', trained_run['config'], evil, '--work-dir', out],
        cwd=trained_run['root'],
    )
    assert proc.returncode == 1, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
    errors = [
        ln for ln in proc.stderr.splitlines() if ln.startswith('error: ')
    ]
    assert len(errors) == 1, explain(proc)
    assert 'refusing to load checkpoint' in errors[0]
    assert str(evil) in errors[0] and 'io.open' in errors[0]
    assert not target.exists()
    assert not (out / 'metrics.json').exists()


def test_non_finite_loss_stops_and_keeps_checkpoints(
    trained_run, trained_work_copy
):
    work, before = trained_work_copy, _digests(trained_work_copy)

    # --lr-scale reaches past the rate the resume restores: 1e30 explodes
    proc = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--work-dir',
            work,
            '--resume',
            '--lr-scale',
            '1e30',
            '--cfg-options',
            'train_cfg.max_epochs=3',
        ],
        cwd=trained_run['root'],
    )
    assert proc.returncode == 1, explain(proc)
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and 'Traceback' not in proc.stderr, explain(proc)
    assert re.search(
        r'non-finite loss at iteration \d+ \(epoch 3\): '
        r'loss\w*=(nan|inf)',
        err[0],
    ), err[0]
    assert '--resume --lr-scale 0.1' in err[0]
    assert _digests(work) == before
    assert (work / 'last_checkpoint').read_text() == str(work / 'epoch_2.pth')

    # and the advice works: a lower rate resumes cleanly from epoch 2
    proc = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--work-dir',
            work,
            '--resume',
            '--lr-scale',
            '0.1',
            '--cfg-options',
            'train_cfg.max_epochs=3',
        ],
        cwd=trained_run['root'],
    )
    assert proc.returncode == 0, explain(proc)
    assert 'resumed epoch: 2' in proc.stdout + proc.stderr
    assert re.search(
        r'Epoch\(train\) +\[3\].* lr: 5\.0000e-04', proc.stdout + proc.stderr
    ), explain(proc)


def _tree(root):
    return {
        p.relative_to(root): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob('*')
        if p.is_file()
    }


def test_tools_write_only_to_the_named_outputs(resumed):
    """train (resume) and test with --show-dir change nothing under the
    current directory, data or config except the work dirs given."""
    assert resumed['test'].returncode == 0, explain(resumed['test'])
    # the session's directory (data, config, its work dir) was only read
    assert resumed['root_after'] == resumed['root_before']
    before, after = resumed['base_before'], resumed['base_after']
    changed = {p for p, v in after.items() if before.get(p) != v}
    assert changed and all(p.parts[0] in ('work', 'out') for p in changed)
