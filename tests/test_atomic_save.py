"""kill -9 during a checkpoint save never leaves a truncated file."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.fileio import get_file_backend

from eca_mmdet.engine import (AtomicLocalBackend, disable_stack_fixes,
                              enable_stack_fixes, stack_fixes_enabled)

WRITER = r'''
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
'''


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
    assert isinstance(get_file_backend(str(tmp_path / 'epoch_1.pth')),
                      AtomicLocalBackend)


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


def test_kill_during_save_leaves_old_or_complete_file(tmp_path):
    path, writing = tmp_path / 'epoch_1.pth', tmp_path / 'writing'
    proc = subprocess.Popen([sys.executable, '-c', WRITER, str(path),
                             str(writing)])
    try:
        # kill inside the second write of a 400 MB checkpoint
        _wait_for(lambda: writing.exists() and writing.read_text() == '..')
        time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    ckpt = torch.load(path, weights_only=True)  # complete, not truncated
    assert ckpt['state_dict']['w'].numel() == 100_000_000
