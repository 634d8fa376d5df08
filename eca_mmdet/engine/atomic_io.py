"""Atomic local writes for mmengine's file I/O.

mmengine writes checkpoints (``epoch_N.pth``) and the ``last_checkpoint``
pointer with ``open(path, 'wb')``: a job killed during the write leaves a
truncated file that ``--resume`` then picks. :class:`AtomicLocalBackend`
writes to a temporary file in the same directory, flushes it to disk and
renames it over the target, so a reader sees the old file or the complete
new one, never a part. :func:`eca_mmdet.engine.fixes.enable_stack_fixes`
makes it mmengine's local backend (explicitly: importing this module changes
nothing).
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend

__all__ = ['AtomicLocalBackend', 'atomic_write']


def atomic_write(data: Union[bytes, str], filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
    """Write ``data`` to ``filepath`` via a temporary file and a rename."""
    filepath = os.fspath(filepath)
    directory = osp.dirname(osp.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=directory, prefix=f'.{osp.basename(filepath)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data.encode(encoding) if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.unlink(tmp)
        raise


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put``/``put_text`` are atomic."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)

    def put_text(self, obj: str, filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        atomic_write(obj, filepath, encoding)
