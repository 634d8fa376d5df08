"""One run per work dir: an advisory lock held while a training or a test
lives.

Two trainings in the same work dir overwrite each other's ``epoch_N.pth``
and ``last_checkpoint`` and interleave their logs; two tests overwrite each
other's ``metrics.json`` and results. :func:`lock_work_dir`
takes an exclusive ``fcntl.flock`` on ``WORK_DIR/.train.lock`` and keeps it
until the process ends; the kernel releases it when the process dies, however
it dies (even ``kill -9``), so a stale lock file never blocks a new run. The
file holds the holder's pid, to name it in the refusal.

``flock`` is advisory and local: it does not protect a work dir shared
between machines over NFS.
"""

import errno
import fcntl
import os
import os.path as osp
from typing import Dict, Optional

from .errors import EcaMmdetError

__all__ = ['LOCK_FILE', 'WorkDirBusyError', 'lock_work_dir', 'unlock_work_dir']

LOCK_FILE = '.train.lock'

# work dir (absolute) -> open file descriptor holding the lock
_HELD: Dict[str, int] = {}


class WorkDirBusyError(EcaMmdetError):
    """Another process is training or testing in the work dir."""


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode('ascii', 'replace').strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_work_dir(work_dir: str, hold: bool = True) -> str:
    """Lock ``work_dir`` for this process (created if missing).

    Args:
        work_dir (str): The run's work dir.
        hold (bool): Keep the lock until the process ends (or
            :func:`unlock_work_dir`). ``False`` only checks that the work dir
            is free (``--check``): it creates nothing and releases the lock
            at once.

    Returns:
        str: The lock file's path.

    Raises:
        WorkDirBusyError: another process holds the lock; names the work dir
            and the holder's pid.
    """
    key = osp.abspath(work_dir)
    path = osp.join(key, LOCK_FILE)
    if key in _HELD:
        return path
    if not hold and not osp.isfile(path):
        return path
    os.makedirs(key, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        pid = _read_pid(fd)
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise WorkDirBusyError(
                f'cannot lock the work dir {work_dir} ({path}): {e.strerror}'
            ) from None
        holder = f'pid {pid}' if pid is not None else 'a process'
        raise WorkDirBusyError(
            f'work dir {work_dir} is in use by another run (training or '
            f'test; {holder} holds {path}); wait for it to end or pass '
            'another --work-dir'
        ) from None
    if not hold:
        os.close(fd)  # closing the only descriptor releases the lock
        return path
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
    _HELD[key] = fd
    return path


def unlock_work_dir(work_dir: str) -> None:
    """Release the lock this process holds on ``work_dir`` (if any)."""
    fd = _HELD.pop(osp.abspath(work_dir), None)
    if fd is not None:
        os.close(fd)
