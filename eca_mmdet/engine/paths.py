"""The one output-path guard of the tools: nothing a tool reads is written
over, and an output path that cannot be a file or a directory is refused in one
line before any work starts.

:func:`refuse_overwriting_inputs` takes what a tool will write (files, and
directories it writes into under names it does not choose in advance, such as
renderings named after their images) and what it reads (images, image
directories, annotation files, checkpoints, configs) and raises
:class:`OutputPathError` naming both paths when

* an output file is an input file (also through another path or a link);
* an output directory is an input directory, or holds an input file directly:
  files written into it could replace that input (the caller lists, for an
  output directory, the inputs whose names its files could take);
* an output file is an existing directory, an output directory an existing file,
  or a parent of either is a regular file (``--out model.pth/x.onnx``).
"""

import errno
import os
import os.path as osp
from typing import Iterable, List, Mapping, Optional, Tuple, Union

from .errors import EcaMmdetError

__all__ = [
    'NoSpaceError',
    'OutputPathError',
    'check_output_location',
    'no_space_left',
    'refuse_overwriting_inputs',
]

PathLike = Union[str, 'os.PathLike[str]']
# {label: path or paths}, or (label, path) pairs
Labelled = Union[
    Mapping[str, Union[PathLike, Iterable[PathLike], None]],
    Iterable[Tuple[str, PathLike]],
]


class OutputPathError(EcaMmdetError):
    """An output path would overwrite an input, or cannot be written."""


class NoSpaceError(EcaMmdetError):
    """The disk (or the quota) filled up during a write."""


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def no_space_left(error: BaseException) -> Optional[BaseException]:
    """The "no space left on device" error behind ``error`` (itself, or
    its cause or context: torch and mmengine rewrap write errors), else
    None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            return error
        if 'No space left on device' in str(error):
            return error
        error = error.__cause__ or error.__context__
    return None


def _pairs(items: Labelled) -> List[Tuple[str, str]]:
    """``(label, path)`` pairs of a mapping or an iterable of pairs; None
    paths are left out."""
    if items is None:
        return []
    if isinstance(items, Mapping):
        pairs = []
        for label, value in items.items():
            if value is None:
                continue
            if isinstance(value, (str, bytes, os.PathLike)):
                pairs.append((label, os.fspath(value)))
            else:
                pairs.extend((label, os.fspath(v)) for v in value if v)
        return pairs
    return [(label, os.fspath(p)) for label, p in items if p is not None]


def _real(path: str) -> str:
    return osp.realpath(osp.abspath(osp.expanduser(path)))


def _in_directory(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or lies directly in it (real paths): a
    file written there under a chosen name can replace it."""
    return path == directory or osp.dirname(path) == directory


def check_output_location(label: str, path: PathLike, is_dir: bool) -> None:
    """Refuse an output whose place cannot hold it: a file output that is
    an existing directory, a directory output that is an existing file, or a
    parent that is a regular file.

    Raises:
        OutputPathError: naming the option and the path.
    """
    path = os.fspath(path)
    if is_dir and osp.exists(path) and not osp.isdir(path):
        raise OutputPathError(
            f'{label} {path} is a file, not a directory; give a directory'
        )
    if not is_dir and (osp.isdir(path) or path.endswith(('/', os.sep))):
        raise OutputPathError(
            f'{label} {path} is a directory; give a file path such as '
            f'{osp.join(path, "out" + (osp.splitext(path)[1] or ""))}'
        )
    parent = osp.dirname(osp.abspath(path))
    while parent and not osp.exists(parent):
        up = osp.dirname(parent)
        if up == parent:
            break
        parent = up
    if parent and osp.exists(parent) and not osp.isdir(parent):
        raise OutputPathError(
            f'{label} {path}: {parent} is a file, so nothing can be '
            'written below it; choose another path'
        )


def refuse_overwriting_inputs(
    outputs: Labelled,
    inputs: Labelled,
    output_dirs: Labelled = (),
) -> None:
    """Refuse outputs that would overwrite inputs (see the module doc).

    Args:
        outputs: the files the tool writes, by option name, e.g.
            ``{'--out': 'model.onnx'}``.
        inputs: what it reads, by kind, e.g. ``{'checkpoint': CKPT,
            'image': [IMG, ...], 'image directory': DIR}``.
        output_dirs: the directories it writes files into, by option name.

    Raises:
        OutputPathError: naming the output option and path and the input.
    """
    files, dirs = _pairs(outputs), _pairs(output_dirs)
    for label, path in files:
        check_output_location(label, path, is_dir=False)
    for label, path in dirs:
        check_output_location(label, path, is_dir=True)
    real_inputs = [(k, p, _real(p)) for k, p in _pairs(inputs)]
    for label, path in files:
        out = _real(path)
        for kind, in_path, real in real_inputs:
            same = out == real or (
                osp.exists(path)
                and osp.exists(in_path)
                and osp.samefile(path, in_path)
            )
            if same:
                raise OutputPathError(
                    f'{label} {path} is the {kind} {in_path}: writing it '
                    f'would destroy the {kind}; choose another {label}'
                )
    for label, path in dirs:
        out = _real(path)
        for kind, in_path, real in real_inputs:
            if real == out or (
                not osp.isdir(real) and _in_directory(real, out)
            ):
                where = 'is' if real == out else 'holds'
                raise OutputPathError(
                    f'{label} {path} {where} the {kind} {in_path}: files '
                    f'written there could replace it; choose another '
                    f'{label}'
                )
