"""Atomic local writes for mmengine's file I/O and our own outputs.

mmengine writes checkpoints (``epoch_N.pth``) and the ``last_checkpoint``
pointer with ``open(path, 'wb')``: a job killed during the write leaves a
truncated file that ``--resume`` then picks. :class:`AtomicLocalBackend`
writes to a temporary file in the same directory, flushes it to disk and
renames it over the target, so a reader sees the old file or the complete
new one, never a part. :func:`eca_mmdet.engine.fixes.enable_stack_fixes`
makes it mmengine's local backend (explicitly: importing this module changes
nothing).

The temporary file is ``.<name>.<host>.<pid>.<random>.ecatmp`` next to the
target. A writer killed with SIGKILL cannot remove it; the next atomic write
into that directory (by a process that has not scanned it in the last
minute) removes such files of dead writers (same host, pid no longer
running), never those of a live process. The result gets the mode a
plain ``open(path, 'wb')`` would give: the existing target's mode, else
``0o666 & ~umask`` (not ``tempfile.mkstemp``'s ``0o600``).
"""

import contextlib
import os
import os.path as osp
import re
import secrets
import socket
import stat
import time
from pathlib import Path
from typing import BinaryIO, Dict, Iterator, List, Union

from mmengine.fileio import LocalBackend

__all__ = [
    'AtomicLocalBackend',
    'atomic_write',
    'atomic_writer',
    'remove_stale_temp_files',
]

TEMP_SUFFIX = '.ecatmp'
# A directory is scanned for orphans at its first atomic write in a process
# and then at most once per RESCAN_SECONDS (renderings come by the thousand;
# a scan of a 5000-file directory costs ~15 ms).
RESCAN_SECONDS = 60.0
_last_scan: Dict[str, float] = {}
_TEMP_NAME = re.compile(
    r'^\.(?P<target>.+)\.(?P<host>[A-Za-z0-9-]+)\.'
    r'(?P<pid>\d+)\.[0-9a-f]+' + re.escape(TEMP_SUFFIX) + '$'
)


def _host() -> str:
    """The host's name as it appears in temp names (a shared file system
    may hold temp files of writers on other hosts: those are left alone)."""
    return re.sub(r'[^A-Za-z0-9-]', '-', socket.gethostname()) or 'host'


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def remove_stale_temp_files(directory: Union[str, Path]) -> List[str]:
    """Remove the temp files of atomic writes into ``directory`` whose
    writer (same host) is no longer running; returns the removed paths."""
    host, removed = _host(), []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if not m or m.group('host') != host or _pid_alive(int(m.group('pid'))):
            continue
        try:
            os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:  # cleaned by another process first, not ours, ...
            pass
    return removed


def _plain_save_mode(filepath: str) -> int:
    """The permission bits ``open(filepath, 'wb')`` would leave."""
    try:
        return stat.S_IMODE(os.stat(filepath).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask (read from /proc on Linux: ``os.umask`` can only
    be read by setting it, which races with other threads creating files)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_writer(filepath: Union[str, Path]) -> Iterator[BinaryIO]:
    """A binary file to write ``filepath`` through: a temp file in the same
    directory, fsync'ed and renamed over ``filepath`` when the block ends
    without an exception (removed otherwise)."""
    filepath = os.fspath(filepath)
    directory = osp.dirname(osp.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    now = time.monotonic()
    if now - _last_scan.get(directory, -RESCAN_SECONDS) >= RESCAN_SECONDS:
        _last_scan[directory] = now
        remove_stale_temp_files(directory)
    mode = _plain_save_mode(filepath)
    prefix = f'.{osp.basename(filepath)}.{_host()}.{os.getpid()}.'
    while True:
        tmp = osp.join(directory, prefix + secrets.token_hex(4) + TEMP_SUFFIX)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, 'wb') as f:
            yield f
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(
    data: Union[bytes, str],
    filepath: Union[str, Path],
    encoding: str = 'utf-8',
) -> None:
    """Write ``data`` to ``filepath`` via a temporary file and a rename."""
    with atomic_writer(filepath) as f:
        f.write(data.encode(encoding) if isinstance(data, str) else data)


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put``/``put_text`` are atomic."""

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        atomic_write(obj, filepath)

    def put_text(
        self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8'
    ) -> None:
        atomic_write(obj, filepath, encoding)
