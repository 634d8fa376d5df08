"""Reliability of the training/testing runtime: a
checkpoint of another model, two trainings in one work dir, Ctrl-C, loop
config typos and a non-finite loss before the first checkpoint."""

import re
import signal
import subprocess
import sys
import time
import types

import pytest
import torch
from tools_testlib import (
    TOOLS,
    explain,
    run_tool,
    tool_env,
)

pytest.importorskip('mmdet')


def _one_error(proc, *needles, status=1):
    assert proc.returncode == status, explain(proc)
    assert 'Traceback' not in proc.stderr, explain(proc)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith('error')]
    assert len(errors) == 1, explain(proc)
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _copy_work(trained_work_copy):
    """The work dir as a run stopped after epoch 1 leaves it."""
    work = trained_work_copy
    for ckpt in work.glob('epoch_*.pth'):
        if ckpt.name != 'epoch_1.pth':
            ckpt.unlink()
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    return work


def _popen_train(config, work, cwd, *options):
    cmd = [
        sys.executable,
        str(TOOLS / 'train.py'),
        str(config),
        '--work-dir',
        str(work),
        *options,
    ]
    return subprocess.Popen(
        cmd,
        cwd=str(cwd),
        env=tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, proc, timeout=300):
    """Poll ``condition()`` while ``proc`` runs."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(
                f'training ended early ({proc.returncode}):\n'
                f'{out[-3000:]}\n{err[-3000:]}'
            )
        time.sleep(0.2)
    pytest.fail('timed out waiting for the training')


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


# --- 1. testing a checkpoint of another model ------------------------------


@pytest.mark.parametrize(
    'option, kind',
    [
        ('model.backbone.eca_k_size=7', 'shape mismatch'),
        ('model.backbone.depth=34', 'missing in checkpoint'),
    ],
)
def test_test_tool_refuses_checkpoint_of_another_model(
    trained_run, tmp_path, option, kind
):
    ckpt = trained_run['work'] / 'epoch_1.pth'
    out = tmp_path / 'out'
    proc = run_tool(
        [
            'test.py',
            trained_run['config'],
            ckpt,
            '--work-dir',
            out,
            '--cfg-options',
            option,
        ],
        cwd=trained_run['root'],
    )
    err = _one_error(proc, str(ckpt), 'does not fit', kind, 'backbone.')
    assert str(trained_run['config']) in err
    assert not (out / 'metrics.json').exists()
    assert not list(out.glob('results*.json'))


# --- 2. resuming into a changed model --------------------------------------


@pytest.mark.parametrize('explicit', [False, True])
def test_resume_refuses_checkpoint_of_another_model(
    trained_run, trained_work_copy, explicit
):
    work = _copy_work(trained_work_copy)
    ckpt = work / 'epoch_1.pth'
    before = ckpt.read_bytes()
    resume = ['--resume', ckpt] if explicit else ['--resume']
    proc = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--work-dir',
            work,
            *resume,
            '--cfg-options',
            'model.backbone.eca_k_size=7',
            'train_cfg.max_epochs=2',
        ],
        cwd=trained_run['root'],
    )
    _one_error(
        proc, '--resume', str(ckpt), 'shape mismatch', 'backbone.', 'eca'
    )
    assert not (work / 'epoch_2.pth').exists()
    assert ckpt.read_bytes() == before


def test_resume_refuses_optimizer_state_of_another_shape(tmp_path):
    """The weights fit, the saved optimizer state does not (its parameters
    came in another order): torch would load it unchecked."""
    from mmengine.config import Config
    from mmengine.optim import OptimWrapper

    from eca_mmdet.apis.train import check_resume_fits
    from eca_mmdet.engine import CheckpointMismatchError

    def model_and_optimizer(order):
        model = torch.nn.Sequential(
            torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)
        )
        params = list(model.parameters())
        optimizer = torch.optim.AdamW([params[i] for i in order], lr=0.1)
        return model, optimizer

    saved_model, saved_opt = model_and_optimizer([3, 2, 1, 0])
    saved_model(torch.ones(1, 4)).sum().backward()
    saved_opt.step()
    path = tmp_path / 'epoch_1.pth'
    torch.save(
        dict(
            state_dict=saved_model.state_dict(),
            optimizer=saved_opt.state_dict(),
        ),
        path,
    )
    cfg = Config(
        dict(resume=True, load_from=str(path), work_dir=str(tmp_path))
    )

    def runner_for(order):
        model, optimizer = model_and_optimizer(order)
        return types.SimpleNamespace(
            model=model,
            optim_wrapper=OptimWrapper(optimizer),
            build_optim_wrapper=lambda wrapper: wrapper,
        )

    assert check_resume_fits(runner_for([3, 2, 1, 0]), cfg) == str(path)
    with pytest.raises(
        CheckpointMismatchError,
        match=r'optimizer state .*0\.weight exp_avg: '
        r'checkpoint \(2,\) vs model \(3, 4\)',
    ):
        check_resume_fits(runner_for([0, 1, 2, 3]), cfg)


# --- 3. two trainings in one work dir --------------------------------------


@pytest.mark.slow
def test_second_training_into_a_running_work_dir_is_refused(
    tiny_config, tmp_path
):
    work = tmp_path / 'work'
    first = _popen_train(
        tiny_config,
        work,
        tiny_config.parent,
        '--cfg-options',
        'train_cfg.max_epochs=100',
    )
    try:
        _wait_for(lambda: list(work.glob('*/*.log')), first)
        proc = run_tool(
            [
                'train.py',
                tiny_config,
                '--work-dir',
                work,
                '--cfg-options',
                'train_cfg.max_epochs=1',
            ],
            cwd=tiny_config.parent,
            timeout=240,
        )
        _one_error(proc, f'work dir {work} is in use', f'pid {first.pid}')
        # tools/dist_train.sh's --check says so before starting processes
        proc = run_tool(
            ['train.py', tiny_config, '--work-dir', work, '--check'],
            cwd=tiny_config.parent,
        )
        _one_error(proc, f'pid {first.pid}')
        assert first.poll() is None, 'the first training was disturbed'
        assert len(list(work.glob('*/*.log'))) == 1
    finally:
        first.kill()  # like kill -9: the kernel releases the lock
        first.communicate()
    proc = run_tool(
        [
            'train.py',
            tiny_config,
            '--work-dir',
            work,
            '--check',
            '--start-over',  # the killed run may have saved epoch_1.pth
        ],
        cwd=tiny_config.parent,
    )
    assert proc.returncode == 0, explain(proc)


# --- 4. Ctrl-C --------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_naming_the_last_checkpoint(
    tiny_config, tmp_path
):
    from eca_mmdet.engine import safe_torch_load

    work = tmp_path / 'work'
    proc = _popen_train(
        tiny_config,
        work,
        tiny_config.parent,
        '--cfg-options',
        'train_cfg.max_epochs=100',
    )
    try:
        _wait_for((work / 'last_checkpoint').is_file, proc)
        time.sleep(1.0)  # into the next epoch (or its checkpoint save)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    last = (work / 'last_checkpoint').read_text().strip()
    line = _one_error(
        done, 'interrupted (SIGINT)', last, '--resume', status=130
    )
    assert re.search(r'epoch_\d+\.pth', line)
    assert safe_torch_load(last, map_location='cpu')['meta']['epoch'] >= 1
    partial = [p for p in work.glob('.*') if p.name != '.train.lock']
    assert not partial, f'temporary files left: {partial}'


# --- 5. loop config typos (the train tool; --cfg-options without '=' is in
# test_preflight.py) -----------------------------------------------------


def test_unknown_loop_key_is_named(trained_run, tmp_path):
    proc = run_tool(
        [
            'train.py',
            trained_run['config'],
            '--check',
            '--work-dir',
            tmp_path / 'w',
            '--cfg-options',
            'train_cfg.max_epoch=2',
        ],
        cwd=trained_run['root'],
    )
    _one_error(
        proc,
        'train_cfg.max_epoch ',
        'EpochBasedTrainLoop',
        'did you mean train_cfg.max_epochs?',
        'val_interval',
    )
    proc = run_tool(
        [
            'test.py',
            trained_run['config'],
            trained_run['work'] / 'epoch_1.pth',
            '--check',
            '--work-dir',
            tmp_path / 'w',
            '--cfg-options',
            'test_cfg.fp18=True',
        ],
        cwd=trained_run['root'],
    )
    _one_error(proc, 'test_cfg.fp18', 'TestLoop', 'fp16')


# --- 6. non-finite loss before the first checkpoint ------------------------


@pytest.mark.slow
def test_non_finite_loss_before_any_checkpoint(tiny_config, tmp_path):
    work = tmp_path / 'work'
    proc = run_tool(
        [
            'train.py',
            tiny_config,
            '--work-dir',
            work,
            '--lr-scale',
            '1e30',
        ],
        cwd=tiny_config.parent,
    )
    err = _one_error(
        proc, 'non-finite loss', 'no checkpoint was written', '--lr-scale 0.1'
    )
    assert '--resume' not in err and 'Resume' not in err
    assert not list(work.glob('*.pth'))
