"""tools/slurm_train.sh and tools/slurm_test.sh (mmdet's interface) with a
fake ``srun`` on PATH: the srun command line they build, and that the
command they hand to srun runs our tool under ``--launcher=slurm``."""

import os
import shutil
import stat
import subprocess
import sys

import pytest
from tools_testlib import (
    REPO,
    TOOLS,
    explain,
    free_port,
    tool_env,
    write_config,
)

if shutil.which('bash') is None:  # pragma: no cover
    pytest.skip('needs bash for tools/slurm_*.sh', allow_module_level=True)

# Records its argv (NUL-separated) in $SRUN_LOG; with SRUN_EXEC=1 it then
# runs the command after srun's options as task 0 of 1, as srun would.
FAKE_SRUN = r"""#!/usr/bin/env bash
printf '%s\0' "$@" > "$SRUN_LOG"
[ "${SRUN_EXEC:-0}" = 1 ] || exit 0
while [ "$#" -gt 0 ]; do
    case "$1" in
        -p) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
export SLURM_PROCID=0 SLURM_NTASKS=1 SLURM_LOCALID=0 SLURM_NODELIST=localhost
exec "$@"
"""


@pytest.fixture
def fake_srun(tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / 'srun_argv'

    def run(script, *args, **env_vars):
        env = tool_env()
        env['PATH'] = f'{bin_dir}{os.pathsep}{env["PATH"]}'
        env['SRUN_LOG'] = str(log)
        for var in (
            'GPUS',
            'GPUS_PER_NODE',
            'CPUS_PER_TASK',
            'SRUN_ARGS',
            'GRES',
            'PYTHON',
        ):
            env.pop(var, None)
        env.update(env_vars)
        proc = subprocess.run(
            [str(TOOLS / script), *map(str, args)],
            cwd=str(tmp_path),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        argv = log.read_text().split('\0')[:-1] if log.exists() else None
        return proc, argv

    return run


def _default_python():
    venv = REPO / '.venv' / 'bin' / 'python'
    return str(venv) if os.access(venv, os.X_OK) else 'python'


@pytest.mark.slow
def test_slurm_train_command_line(fake_srun):
    proc, argv = fake_srun(
        'slurm_train.sh',
        'dev',
        'my job',
        'a b.py',
        'work dir',
        '--resume',
        '--cfg-options',
        'train_cfg.max_epochs=2',
    )
    assert proc.returncode == 0, explain(proc)
    assert argv == [
        '-p',
        'dev',
        '--job-name=my job',
        '--gres=gpu:8',
        '--ntasks=8',
        '--ntasks-per-node=8',
        '--cpus-per-task=5',
        '--kill-on-bad-exit=1',
        _default_python(),
        '-u',
        str(TOOLS / 'train.py'),
        'a b.py',
        '--work-dir=work dir',
        '--launcher=slurm',
        '--resume',
        '--cfg-options',
        'train_cfg.max_epochs=2',
    ]


@pytest.mark.slow
def test_slurm_test_command_line_and_environment(fake_srun):
    proc, argv = fake_srun(
        'slurm_test.sh',
        'cpu',
        'eval',
        'cfg.py',
        'ckpt.pth',
        '--out',
        'r.pkl',
        GPUS='4',
        GPUS_PER_NODE='2',
        CPUS_PER_TASK='3',
        GRES='',
        SRUN_ARGS='--time=1:00:00 --mem=8G',
        PYTHON='/opt/py/bin/python3',
    )
    assert proc.returncode == 0, explain(proc)
    # GRES= leaves --gres out (CPU partition); SRUN_ARGS are word-split
    assert argv == [
        '-p',
        'cpu',
        '--job-name=eval',
        '--ntasks=4',
        '--ntasks-per-node=2',
        '--cpus-per-task=3',
        '--kill-on-bad-exit=1',
        '--time=1:00:00',
        '--mem=8G',
        '/opt/py/bin/python3',
        '-u',
        str(TOOLS / 'test.py'),
        'cfg.py',
        'ckpt.pth',
        '--launcher=slurm',
        '--out',
        'r.pkl',
    ]


@pytest.mark.slow
@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_usage_errors(fake_srun, script):
    proc, argv = fake_srun(script, 'dev', 'job', 'cfg.py')
    assert proc.returncode == 1
    assert proc.stderr.startswith('usage: '), explain(proc)
    assert argv is None  # srun never ran
    proc, argv = fake_srun(script, 'dev', 'job', 'cfg.py', 'x', GPUS='two')
    assert proc.returncode == 1
    assert (
        "error: GPUS must be a positive integer, got 'two'" in proc.stderr
    ), explain(proc)
    assert argv is None


@pytest.mark.slow
def test_slurm_train_command_runs_our_tool(fake_srun, shapes_data, tmp_path):
    """The command srun gets, run as Slurm task 0 of 1, is accepted by
    tools/train.py (``--work-dir=``, ``--launcher=slurm``): ``--check``
    checks the config and the data without training."""
    pytest.importorskip('mmdet')
    config = write_config(tmp_path / 'tiny.py', shapes_data, max_epochs=1)
    proc, argv = fake_srun(
        'slurm_train.sh',
        'dev',
        'job',
        config,
        tmp_path / 'work',
        '--check',
        GRES='',
        SRUN_EXEC='1',
        PYTHON=sys.executable,
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()),
    )
    assert proc.returncode == 0, explain(proc)
    assert argv[argv.index(sys.executable) + 1 :] == [
        '-u',
        str(TOOLS / 'train.py'),
        str(config),
        f'--work-dir={tmp_path / "work"}',
        '--launcher=slurm',
        '--check',
    ]
    assert (
        f'ok: {config} is ready to train (work dir {tmp_path / "work"})'
        in proc.stdout
    ), explain(proc)
