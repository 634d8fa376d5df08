"""Safe checkpoint loading for mmengine 0.10 on every supported torch.

mmengine 0.10.7 calls ``torch.load(filename, map_location)`` without
``weights_only``. Since torch 2.6 that means ``weights_only=True``, and the
checkpoints mmengine itself writes cannot be read back (their ``message_hub``
holds :class:`mmengine.logging.HistoryBuffer` objects and numpy arrays), so
``--resume`` and testing a trained model fail; before torch 2.6 it means
full unpickling, which lets any checkpoint run arbitrary code.

:func:`safe_torch_load` does neither: it reads checkpoints with the
restricted unpickler of :mod:`.safe_pickle` (``torch.load(...,
weights_only=False, pickle_module=safe_pickle)``, the same on torch 2.0 to
2.13), which resolves torch's own weights-only globals and exactly the
globals our training checkpoints contain (:func:`safe_checkpoint_globals`).
A checkpoint that needs any other global is refused with
:class:`UnsafeCheckpointError` before that global is imported or called.
:func:`load_from_local_safe` is the same as an mmengine checkpoint loader;
:func:`eca_mmdet.engine.fixes.enable_stack_fixes` installs it (explicitly:
importing this module changes nothing).
"""

import os
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Union

import torch
from mmengine.model import is_model_wrapper

from . import safe_pickle
from .errors import EcaMmdetError
from .safe_pickle import (
    history_buffer_getattr,
    safe_checkpoint_global_names,
    safe_checkpoint_globals,
)

__all__ = [
    'CheckpointLoadError',
    'CheckpointMismatchError',
    'FittedCheckpoint',
    'checkpoint_mismatch',
    'load_fitting_checkpoint',
    'strip_prefix',
    'checkpoint_file_problem',
    'state_dict_of',
    'ModelZooUnavailableError',
    'UnsafeCheckpointError',
    'load_from_local_safe',
    'history_buffer_getattr',
    'safe_checkpoint_globals',
    'safe_checkpoint_global_names',
    'safe_torch_load',
    'torchvision_importable',
]

CONVERT_HINT = (
    'convert the weights with `python tools/convert_weights.py '
    'SRC DST` and set --cfg-options '
    'model.backbone.init_cfg.checkpoint=DST, or set '
    'model.backbone.init_cfg=None to train from scratch'
)


class CheckpointLoadError(EcaMmdetError):
    """A checkpoint is missing or cannot be read."""


class CheckpointMismatchError(CheckpointLoadError):
    """A checkpoint's weights do not fit the model they are loaded into."""


def state_dict_of(checkpoint: Any) -> Dict[str, torch.Tensor]:
    """The state dict of a loaded checkpoint (``state_dict`` entry or the
    dict itself), without DataParallel's ``module.`` prefixes."""
    state = (
        checkpoint.get('state_dict', checkpoint)
        if isinstance(checkpoint, dict)
        else None
    )
    if not isinstance(state, dict):
        raise CheckpointLoadError('the checkpoint holds no state_dict')
    return strip_prefix(state, 'module.', keep_others=True)


def strip_prefix(
    state_dict: Dict[str, Any], prefix: str, keep_others: bool = False
) -> Dict[str, Any]:
    """The entries of ``state_dict`` under ``prefix`` (``'backbone'`` or
    ``'backbone.'``), without it; ``keep_others`` also keeps, unchanged,
    those not under it."""
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    return {
        k[len(prefix) :] if k.startswith(prefix) else k: v
        for k, v in state_dict.items()
        if keep_others or k.startswith(prefix)
    }


def checkpoint_mismatch(
    model: torch.nn.Module,
    state_dict: Dict[str, torch.Tensor],
    limit: int = 3,
    ignore_unexpected: bool = False,
) -> Optional[str]:
    """``None`` if ``state_dict`` fits ``model`` exactly, else a short text
    naming the first mismatched shapes, missing and unexpected keys.

    Args:
        model (nn.Module): The model the weights are for.
        state_dict (dict): The weights.
        limit (int): How many keys of each kind to name.
        ignore_unexpected (bool): Accept keys the model does not have (e.g.
            a classifier's ``fc`` in backbone weights). BatchNorm's
            ``num_batches_tracked`` counters are never required.
    """
    own = model.state_dict()
    shapes = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in state_dict.items()
        if k in own and hasattr(v, 'shape') and v.shape != own[k].shape
    ]
    missing = [
        k
        for k in own
        if k not in state_dict and not k.endswith('num_batches_tracked')
    ]
    unexpected = (
        [] if ignore_unexpected else [k for k in state_dict if k not in own]
    )
    parts = []
    for what, items in (
        ('shape mismatch', shapes),
        ('missing in checkpoint', missing),
        ('not in model', unexpected),
    ):
        if items:
            more = (
                f' (+{len(items) - limit} more)' if len(items) > limit else ''
            )
            parts.append(
                f'{what} {len(items)}: ' + '; '.join(items[:limit]) + more
            )
    return ' | '.join(parts) or None


class FittedCheckpoint(NamedTuple):
    """A checkpoint that fits its model (:func:`load_fitting_checkpoint`)."""

    checkpoint: Any  # as loaded: ``meta``, ``optimizer``, ... are here
    state_dict: Dict[str, torch.Tensor]  # with the model's key names


def load_fitting_checkpoint(
    model: torch.nn.Module,
    filename: str,
    target: str = 'the model',
    what: str = 'checkpoint',
    fix: Union[None, str, Callable[[Dict[str, torch.Tensor]], str]] = None,
    prefix: Optional[str] = None,
    ignore_unexpected: bool = False,
    checkpoint: Any = None,
    load: bool = False,
) -> FittedCheckpoint:
    """Read ``filename`` (weights-only, :func:`safe_torch_load`) and refuse
    it unless its weights fit ``model`` exactly (:func:`checkpoint_mismatch`).

    The one fit check of the project: the backbone's pretrained weights
    (train preflight), :func:`~eca_mmdet.apis.load_detector`, testing,
    ``--resume``, the ONNX export and the attention tool all go through it.
    mmengine itself loads non-strictly and only logs what did not fit, which
    leaves part of the model random.

    Args:
        model (nn.Module): The model (a model wrapper is unwrapped).
        filename (str): The checkpoint file, named in the message.
        target (str): How the message names the model (``'the model of
            CONFIG'``).
        what (str): How the message names the checkpoint.
        fix (str or callable, optional): What to do about a mismatch, added
            to the message; a callable gets the state dict.
        prefix (str, optional): Only the weights under this prefix
            (``'backbone.'``), without it, as mmengine's ``Pretrained``
            ``prefix``.
        ignore_unexpected (bool): Accept weights the model lacks (e.g. an
            ImageNet classifier's ``fc``).
        checkpoint: ``filename`` already loaded, to check without reading
            it again.
        load (bool): Also load the weights into ``model``.

    Returns:
        FittedCheckpoint: The loaded checkpoint and its state dict.

    Raises:
        CheckpointLoadError: the file is missing or unreadable.
        CheckpointMismatchError: ``what filename (prefix) does not fit
            target: <first mismatched keys and shapes>; fix``.
    """
    if is_model_wrapper(model):
        model = model.module
    if checkpoint is None:
        checkpoint = safe_torch_load(filename, map_location='cpu')
    state = state_dict_of(checkpoint)
    if prefix:
        state = strip_prefix(state, prefix)
    problem = checkpoint_mismatch(
        model, state, ignore_unexpected=ignore_unexpected
    )
    if problem:
        hint = fix(state) if callable(fix) else fix
        where = f' (prefix {prefix!r})' if prefix else ''
        raise CheckpointMismatchError(
            f'{what} {filename}{where} does not fit {target}: {problem}'
            + (f'; {hint}' if hint else '')
        )
    if load:  # fits: only BatchNorm counters may be absent
        model.load_state_dict(state, strict=False)
    return FittedCheckpoint(checkpoint, state)


class UnsafeCheckpointError(CheckpointLoadError):
    """A checkpoint needs a global outside the allow-list; it was not loaded.

    Built with :meth:`for_file`. Attributes:
        filename (str): The checkpoint file.
        globals (list[str]): The disallowed globals it references.
    """

    filename = None
    globals: List[str] = []

    @classmethod
    def for_file(
        cls, filename: str, disallowed: List[str]
    ) -> 'UnsafeCheckpointError':
        names = ', '.join(disallowed) or 'unknown'
        err = cls(
            f'refusing to load checkpoint {filename}: it references the '
            f'global(s) {names}, which are not in the allow-list of '
            'eca_mmdet.engine.checkpoint (tensors, containers and '
            f'{", ".join(safe_checkpoint_global_names())}); unpickling such '
            'globals can run arbitrary code, so it was not loaded (nothing in '
            'it ran). Only use checkpoints you trust, re-saved as a plain '
            'state_dict'
        )
        err.filename, err.globals = filename, list(disallowed)
        return err


class ModelZooUnavailableError(CheckpointLoadError):
    """A ``torchvision://``/``modelzoo://`` checkpoint was requested.

    Built with :meth:`for_uri`."""

    filename = None

    @classmethod
    def for_uri(cls, filename: str) -> 'ModelZooUnavailableError':
        err = cls(
            f'cannot load {filename}: the torchvision model zoo is not '
            f'available (torchvision cannot be imported); '
            f'{CONVERT_HINT}'
        )
        err.filename = filename
        return err


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def checkpoint_file_problem(filename: str) -> Optional[str]:
    """What is wrong with a file that is not a loadable checkpoint, judged
    from its first bytes (``None`` when it looks like one: a zip archive,
    which torch >= 1.6 writes, or a legacy pickle)."""
    try:
        size = os.path.getsize(filename)
        with open(filename, 'rb') as f:
            head = f.read(512)
    except OSError as e:
        return f'cannot be read ({e.strerror or type(e).__name__})'
    if size == 0:
        return 'is empty (0 bytes): an interrupted save or download?'
    if head.startswith(b'PK\x03\x04'):  # what torch.save writes
        if zipfile.is_zipfile(filename):
            return None
        return (
            'is truncated or corrupt (a zip archive without its central '
            'directory: an interrupted save or download?)'
        )
    if head.startswith(b'\x80'):  # pickle protocol >= 2 (legacy format)
        return None
    if (
        len(head) >= 9
        and head[8:9] == b'{'
        and int.from_bytes(head[:8], 'little') < size
    ):
        return (
            'is a safetensors file, not a PyTorch checkpoint (timm '
            'ecaresnet* ImageNet weights: tools/convert_weights.py SRC DST; '
            'other weights, e.g. a detector: torch.save({"state_dict": '
            'safetensors.torch.load_file(SRC)}, DST))'
        )
    if head.startswith(b'version https://git-lfs'):
        return (
            'is not a PyTorch checkpoint (a Git LFS pointer file: run '
            '`git lfs pull` to fetch the real file)'
        )
    stripped = head.lstrip().lower()
    if stripped.startswith((b'<!doctype html', b'<html', b'<?xml')):
        return (
            'is not a PyTorch checkpoint (an HTML/XML page, e.g. an '
            'error page saved by a failed download)'
        )
    try:
        text = head.decode('utf-8')
    except UnicodeDecodeError as e:  # maybe cut inside a multi-byte char
        text = (
            head[: e.start].decode('utf-8')
            if size > len(head) and e.start >= len(head) - 3
            else None
        )
    if text is not None and all(
        c.isprintable() or c in '\t\n\r\f' for c in text
    ):
        first = text.strip().splitlines()[0][:40] if text.strip() else ''
        return 'is not a PyTorch checkpoint (a text file' + (
            f' starting with {first!r})' if first else ')'
        )
    return (
        f'is not a PyTorch checkpoint (not a zip archive or a pickle: '
        f'starts with bytes {head[:8].hex(" ")})'
    )


def _weights_only_forced() -> bool:
    # torch >= 2.1 then refuses any pickle_module (torch.load's own check)
    value = os.getenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '0')
    return value.lower() in ('1', 'y', 'yes', 'true')


def safe_torch_load(
    filename: Union[str, os.PathLike],
    map_location: Optional[Union[str, Callable, torch.device]] = None,
):
    """``torch.load(filename)`` with the restricted unpickler of
    :mod:`.safe_pickle`: tensors, containers, torch's weights-only globals
    and exactly :func:`safe_checkpoint_globals`. Returns what
    ``torch.load(filename, weights_only=True)`` would (with the allow-list).

    Raises:
        CheckpointLoadError: the file is missing or unreadable.
        UnsafeCheckpointError: the file needs any other global; it was
            refused before that global was imported or called (there is no
            fallback to full unpickling).
    """
    filename = osp.expanduser(os.fspath(filename))
    if not osp.isfile(filename):
        raise CheckpointLoadError(f'checkpoint not found: {filename}')
    if _weights_only_forced():
        raise CheckpointLoadError(
            f'cannot load checkpoint {filename}: TORCH_FORCE_WEIGHTS_ONLY_LOAD '
            'is set, and with it torch.load refuses the restricted unpickler '
            'eca_mmdet reads checkpoints with (eca_mmdet.engine.safe_pickle); '
            'unset it'
        )
    try:
        return torch.load(
            filename,
            map_location=map_location,
            weights_only=False,  # the restricted pickle_module decides
            pickle_module=safe_pickle,
        )
    except Exception as e:  # noqa: BLE001 - judged below
        error = e
    problem = checkpoint_file_problem(filename)
    if problem:  # empty, text, HTML, ...: say so rather than torch's error
        raise CheckpointLoadError(f'checkpoint {filename} {problem}')
    if isinstance(error, safe_pickle.RefusedGlobal):
        allowed = safe_pickle.allowed_globals()
        named = safe_pickle.checkpoint_global_names(filename)
        refused = {n for n in named if n not in allowed} | {error.name}
        raise UnsafeCheckpointError.for_file(filename, sorted(refused))
    if isinstance(error, pickle.UnpicklingError):
        raise CheckpointLoadError(
            f'cannot load checkpoint {filename}: {_first_line(error)}'
        )
    # truncated/corrupt files, bad object states
    raise CheckpointLoadError(
        f'cannot read checkpoint {filename}: {type(error).__name__}: '
        f'{_first_line(error)}'
    )


def torchvision_importable() -> bool:
    """Whether ``import torchvision`` works (it may be absent, and a wheel
    built for another torch fails to import)."""
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, OSError, RuntimeError
        return False
    return True


def load_from_local_safe(filename: str, map_location=None):
    """mmengine checkpoint loader for local paths (the ``''`` scheme)."""
    return safe_torch_load(filename, map_location=map_location)
