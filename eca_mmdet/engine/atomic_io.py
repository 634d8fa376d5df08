"""Atomic local writes for mmengine's file I/O.

mmengine writes checkpoints (``epoch_N.pth``) and the ``last_checkpoint``
pointer with ``open(path, 'wb')``: a job killed during the write leaves a
truncated file that ``--resume`` then picks. :class:`AtomicLocalBackend`
writes to a temporary file in the same directory, flushes it to disk and
renames it over the target, so a reader sees the old file or the complete
new one, never a part.
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio import io as mmengine_io

__all__ = ['AtomicLocalBackend', 'atomic_write', 'register_atomic_writes']


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


def register_atomic_writes() -> None:
    """Make :class:`AtomicLocalBackend` mmengine's local backend (idempotent),
    dropping cached plain ``LocalBackend`` instances."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    for key, backend in list(mmengine_io.backend_instances.items()):
        if type(backend) is LocalBackend:
            del mmengine_io.backend_instances[key]
