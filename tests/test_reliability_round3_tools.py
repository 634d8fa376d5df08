"""Reliability, round 3, end to end on the shared trained run
(``trained_run``, marked slow): resume without ``last_checkpoint``, a fresh
training into a finished work dir, ``load_from`` that does not fit, the
work-dir lock and all-or-nothing outputs of tools/test.py, NaN weights.
"""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from tools_testlib import explain, run_tool, tool_env


def _digests(folder: Path) -> dict:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob('*.pth'))
    }


def _one_error(proc, *parts: str) -> str:
    assert proc.returncode == 1, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
    errors = [
        ln
        for ln in proc.stderr.strip().splitlines()
        if ln.startswith('error:')
    ]
    assert len(errors) == 1, explain(proc)
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def test_resume_without_last_checkpoint_continues(trained_run, tmp_path):
    """mmengine used to print 'Auto resumed from the latest checkpoint
    None.', train from scratch and overwrite the checkpoints."""
    work = shutil.copytree(trained_run['work'], tmp_path / 'work')
    (work / 'last_checkpoint').unlink()
    before = _digests(work)
    proc = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--work-dir',
            work,
            '--resume',
            '--cfg-options',
            f'train_cfg.max_epochs={trained_run["epochs"] + 1}',
        ],
        cwd=trained_run['root'],
    )
    assert proc.returncode == 0, explain(proc)
    out = proc.stdout + proc.stderr
    assert f'resumed epoch: {trained_run["epochs"]}' in out, explain(proc)
    assert 'latest checkpoint None' not in out
    after = _digests(work)
    assert {k: after[k] for k in before} == before
    assert f'epoch_{trained_run["epochs"] + 1}.pth' in after


def test_copied_work_dir_resumes_from_its_own_checkpoint(
    trained_run, tmp_path
):
    """A copy whose last_checkpoint names the original's file resumes
    from the copy's file of that name."""
    from eca_mmdet.apis.train import build_parser, build_train_config

    work = shutil.copytree(trained_run['work'], tmp_path / 'work')
    named = (work / 'last_checkpoint').read_text().strip()
    assert not named.startswith(str(work))  # still the original's path
    args = build_parser().parse_args(
        [str(trained_run['config']), '--work-dir', str(work), '--resume']
    )
    cfg = build_train_config(args)
    assert cfg.load_from == str(work / Path(named).name)


def test_fresh_training_into_a_finished_work_dir_stops(trained_run, tmp_path):
    work = shutil.copytree(trained_run['work'], tmp_path / 'work')
    before = _digests(work)
    proc = run_tool(
        ['train.py', trained_run['config'], '--work-dir', work],
        cwd=trained_run['root'],
    )
    _one_error(proc, f'work dir {work} holds', '--resume', '--start-over')
    assert _digests(work) == before
    # --check says so too (tools/dist_train.sh runs it first)
    proc = run_tool(
        ['train.py', trained_run['config'], '--work-dir', work, '--check'],
        cwd=trained_run['root'],
    )
    _one_error(proc, '--start-over')


def test_load_from_of_another_model_stops(trained_run, tmp_path):
    """mmengine used to list the mismatches and train from random weights
    with exit status 0."""
    ckpt = torch.load(
        trained_run['checkpoints'][-1], map_location='cpu', weights_only=False
    )
    state = ckpt['state_dict']
    key = next(k for k in state if k.endswith('bbox_head.fc_cls.weight'))
    state[key] = torch.zeros(state[key].shape[0] + 3, state[key].shape[1])
    other = tmp_path / 'other_classes.pth'
    torch.save({'state_dict': state, 'meta': ckpt.get('meta', {})}, other)
    proc = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--work-dir',
            tmp_path / 'work',
            '--cfg-options',
            f'load_from={other}',
        ],
        cwd=trained_run['root'],
    )
    _one_error(proc, f'load_from: checkpoint {other}', key, '--partial-load')
    assert not list((tmp_path / 'work').glob('*.pth'))


def _test_argv(trained_run, work, ckpt=None):
    return [
        'test.py',
        trained_run['config'],
        ckpt or trained_run['checkpoints'][-1],
        '--work-dir',
        work,
    ]


def test_test_takes_the_work_dir_lock(trained_run, tmp_path):
    """Two tools/test.py runs into one work dir used to both exit 0, the
    metrics of one in the file the other named."""
    work = tmp_path / 'work'
    work.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            '-c',
            'import fcntl, os, sys, time\n'
            f'fd = os.open({str(work / ".train.lock")!r}, '
            'os.O_RDWR | os.O_CREAT)\n'
            'fcntl.flock(fd, fcntl.LOCK_EX)\n'
            'os.write(fd, str(os.getpid()).encode())\n'
            'print("locked", flush=True)\n'
            'time.sleep(600)\n',
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == 'locked'
        proc = run_tool(_test_argv(trained_run, work), cwd=trained_run['root'])
        _one_error(proc, f'work dir {work} is in use', f'pid {holder.pid}')
        assert not (work / 'metrics.json').exists()
    finally:
        holder.kill()
        holder.communicate()


def test_test_outputs_all_or_nothing_on_enospc(trained_run, tmp_path):
    """A full disk during tools/test.py used to end in a traceback, leaving
    the new results.bbox.json beside the old run's other files."""
    work = tmp_path / 'work'
    proc = run_tool(_test_argv(trained_run, work), cwd=trained_run['root'])
    assert proc.returncode == 0, explain(proc)
    names = ('metrics.json', 'results.bbox.json', 'results.segm.json')
    before = {n: (work / n).read_bytes() for n in names}
    assert json.loads(before['metrics.json'])['coco/bbox_mAP'] is not None
    code = (
        'import sys\n'
        'import eca_mmdet.apis.test as t\n'
        'def full(metrics, path):\n'
        '    raise OSError(28, "No space left on device", path)\n'
        't.write_metrics = full\n'
        f'sys.exit(t.main({[str(a) for a in _test_argv(trained_run, work)[1:]]!r}))\n'
    )
    proc = subprocess.run(
        [sys.executable, '-c', code],
        cwd=str(trained_run['root']),
        env=tool_env(),
        capture_output=True,
        text=True,
    )
    _one_error(proc, 'no space left', 'no file was replaced')
    assert {n: (work / n).read_bytes() for n in names} == before
    assert not (work / '.test_outputs.partial').exists()


def test_nan_checkpoint_is_named(trained_run, tmp_path):
    """An all-NaN checkpoint used to give exit status 0, an empty
    metrics.json and 'no detections at all?'."""
    ckpt = torch.load(
        trained_run['checkpoints'][-1], map_location='cpu', weights_only=False
    )
    for value in ckpt['state_dict'].values():
        if value.is_floating_point():
            value.fill_(float('nan'))
    nan = tmp_path / 'nan.pth'
    torch.save(ckpt, nan)
    proc = run_tool(
        _test_argv(trained_run, tmp_path / 'work', nan),
        cwd=trained_run['root'],
    )
    _one_error(proc, f'checkpoint {nan} holds NaN or infinite weights')
    assert not (tmp_path / 'work' / 'metrics.json').exists()


def test_segm_only_evaluation_with_a_degenerate_box(trained_run, tmp_path):
    """One val box of zero width used to refuse the whole evaluation, even
    a segm-only one, while 0.5 px only warned: both now run and warn."""
    for width in (0, 0.5):
        data = shutil.copytree(
            trained_run['data'], tmp_path / f'shapes{width}'
        )
        ann = data / 'annotations' / 'instances_val.json'
        coco = json.loads(ann.read_text())
        first = next(a for a in coco['annotations'] if not a.get('iscrowd'))
        first['bbox'][2] = width
        ann.write_text(json.dumps(coco))
        work = tmp_path / f'work{width}'
        proc = run_tool(
            _test_argv(trained_run, work)
            + [
                '--cfg-options',
                f'test_dataloader.dataset.data_root={data}/',
                f'test_evaluator.ann_file={ann}',
                'test_evaluator.metric=segm',
            ],
            cwd=trained_run['root'],
        )
        assert proc.returncode == 0, explain(proc)
        out = proc.stdout + proc.stderr
        assert f'{ann}: 1 of ' in out, out[-3000:]
        assert f'ids {first["id"]}' in out, out[-3000:]
        metrics = json.loads((work / 'metrics.json').read_text())
        assert metrics['coco/segm_mAP'] is not None
        assert (work / 'results.segm.json').is_file()
