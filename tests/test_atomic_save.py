"""kill -9 during a checkpoint save never leaves a truncated file."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.fileio import get_file_backend

from eca_mmdet.engine import (
    AtomicLocalBackend,
    disable_stack_fixes,
    enable_stack_fixes,
    stack_fixes_enabled,
)

WRITER = r"""
import sys, torch
import eca_mmdet.stack_fixes  # the config opt-in: atomic local writes
from mmengine.fileio import get_file_backend
from mmengine.runner.checkpoint import save_checkpoint
path, writing = sys.argv[1], sys.argv[2]
backend_cls = type(get_file_backend(path))
put = backend_cls.put

def announced_put(self, obj, filepath):  # tell the test the write starts
    open(writing, 'a').write('.')
    put(self, obj, filepath)

backend_cls.put = announced_put
big = {'state_dict': {'w': torch.arange(100_000_000, dtype=torch.float32)}}
while True:  # keep saving until killed
    save_checkpoint(big, path)
"""


def _wait_for(predicate, timeout=180):
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, 'timed out'
        time.sleep(0.01)


@pytest.fixture(autouse=True, scope='module')
def stack_fixes():
    was_enabled = stack_fixes_enabled()
    enable_stack_fixes()
    yield
    if not was_enabled:
        disable_stack_fixes()


def test_mmengine_uses_the_atomic_backend(tmp_path):
    assert isinstance(
        get_file_backend(str(tmp_path / 'epoch_1.pth')), AtomicLocalBackend
    )


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'last_checkpoint'
    target.write_text('epoch_1.pth')

    def disk_full(fd):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', disk_full)
    backend = get_file_backend(str(target))
    with pytest.raises(OSError, match='No space'):
        backend.put_text('epoch_2.pth', str(target))
    assert target.read_text() == 'epoch_1.pth'
    assert [p.name for p in tmp_path.iterdir()] == ['last_checkpoint']
    monkeypatch.undo()
    backend.put_text('epoch_2.pth', str(target))
    assert target.read_text() == 'epoch_2.pth'


@pytest.mark.slow
def test_kill_during_save_leaves_old_or_complete_file(tmp_path):
    path, writing = tmp_path / 'epoch_1.pth', tmp_path / 'writing'
    proc = subprocess.Popen(
        [sys.executable, '-c', WRITER, str(path), str(writing)]
    )
    try:
        # kill inside the second write of a 400 MB checkpoint
        _wait_for(lambda: writing.exists() and writing.read_text() == '..')
        time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    ckpt = torch.load(path, weights_only=True)  # complete, not truncated
    assert ckpt['state_dict']['w'].numel() == 100_000_000


# A writer that stops inside the atomic write (at the fsync, with the temp
# file written) until it is killed.
STUCK_WRITER = r"""
import os, sys, time
import eca_mmdet.stack_fixes  # noqa: F401  atomic local writes
from mmengine.fileio import get_file_backend
path, ready = sys.argv[1], sys.argv[2]

def stuck_fsync(fd):
    open(ready, 'w').close()
    time.sleep(600)

os.fsync = stuck_fsync
get_file_backend(path).put(b'x' * 1000, path)
"""


def _stuck_writer(path, ready):
    proc = subprocess.Popen(
        [sys.executable, '-c', STUCK_WRITER, str(path), str(ready)]
    )
    _wait_for(lambda: ready.exists() or proc.poll() is not None)
    assert proc.poll() is None, 'the writer did not reach the write'
    return proc


def test_temp_file_of_killed_writer_is_removed_by_next_save(tmp_path):
    """SIGKILL leaves the temp file behind; the next save into the directory
    removes it, but not the temp file of a writer that is still running."""
    target = tmp_path / 'epoch_1.pth'
    dead = _stuck_writer(target, tmp_path / 'ready_dead')
    os.kill(dead.pid, signal.SIGKILL)
    dead.wait()
    orphans = [p.name for p in tmp_path.iterdir() if p.name.startswith('.')]
    assert len(orphans) == 1 and str(dead.pid) in orphans[0], orphans

    alive = _stuck_writer(tmp_path / 'epoch_2.pth', tmp_path / 'ready_alive')
    try:
        live_tmp = [
            p.name
            for p in tmp_path.iterdir()
            if p.name.startswith('.') and p.name not in orphans
        ]
        assert len(live_tmp) == 1 and str(alive.pid) in live_tmp[0]
        get_file_backend(str(target)).put_text(
            'epoch_1.pth', str(tmp_path / 'last')
        )
        hidden = sorted(
            p.name for p in tmp_path.iterdir() if p.name.startswith('.')
        )
        assert hidden == live_tmp  # the dead writer's gone, the live kept
    finally:
        os.kill(alive.pid, signal.SIGKILL)
        alive.wait()


@pytest.mark.parametrize('umask', [0o022, 0o002])
def test_saved_files_get_the_mode_of_a_plain_save(tmp_path, umask):
    """Not tempfile.mkstemp's 0600: 0666 & ~umask for a new file, the old
    file's mode when overwriting one (as open(path, 'wb') does)."""
    old = os.umask(umask)
    try:
        backend = get_file_backend(str(tmp_path / 'x'))
        backend.put(b'weights', str(tmp_path / 'epoch_1.pth'))
        backend.put_text('epoch_1.pth', str(tmp_path / 'last_checkpoint'))
        with open(tmp_path / 'plain', 'wb') as f:
            f.write(b'plain')
        plain = os.stat(tmp_path / 'plain').st_mode & 0o777
        assert plain == 0o666 & ~umask
        for name in ('epoch_1.pth', 'last_checkpoint'):
            assert os.stat(tmp_path / name).st_mode & 0o777 == plain, name
        os.chmod(tmp_path / 'epoch_1.pth', 0o640)
        backend.put(b'weights 2', str(tmp_path / 'epoch_1.pth'))
        assert os.stat(tmp_path / 'epoch_1.pth').st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
