"""Explicit workarounds for the pinned stack (mmengine 0.10 on torch 2.x).

``import eca_mmdet`` only adds registry entries. These fixes change
mmengine's process-wide state, so they are turned on explicitly:

* by this project's tools (``tools/*.py``, ``demo/image_demo.py``), which
  call :func:`enable_stack_fixes`;
* by a config, with one line (the project's own configs carry it)::

      custom_imports = dict(
          imports=['eca_mmdet', 'eca_mmdet.stack_fixes'],
          allow_failed_imports=False)

  ``Config.fromfile`` imports ``custom_imports`` while parsing, so the fixes
  are in place before mmdet's own ``tools/train.py``, ``init_detector`` or
  ``DetInferencer`` load a checkpoint.

What :func:`enable_stack_fixes` changes, and why:

* mmengine's loader of local checkpoints (the ``''`` scheme of
  :class:`~mmengine.runner.CheckpointLoader`) becomes
  :func:`~.checkpoint.load_from_local_safe`: the restricted unpickler of
  :mod:`.safe_pickle` (torch's weights-only globals plus exactly the globals
  of our training checkpoints), the same on every supported torch. mmengine
  0.10.7 calls ``torch.load`` without ``weights_only``, which since torch 2.6
  refuses the ``HistoryBuffer`` of its own checkpoints (``--resume`` and
  testing fail) and before 2.6 unpickles anything; there is no fallback to
  unsafe unpickling.
* ``torchvision://`` and ``modelzoo://`` keep mmengine's loader where
  torchvision can be imported; only where it cannot are they refused with
  :class:`~.checkpoint.ModelZooUnavailableError` (one clear line instead of
  an ``ImportError`` deep inside weight initialisation).
* mmengine's ``local`` file backend becomes
  :class:`~.atomic_io.AtomicLocalBackend`: checkpoints and the
  ``last_checkpoint`` pointer are written to a temporary file and renamed,
  so a killed job never leaves a truncated checkpoint for ``--resume``.

torch's own safe globals are never changed (the allow-list belongs to the
unpickler passed to each load as ``pickle_module``). :func:`disable_stack_fixes`
restores exactly what was there before.
"""

from typing import Any, Callable, Dict, Optional

from mmengine.fileio import LocalBackend
from mmengine.fileio import io as mmengine_io
from mmengine.fileio.backends import registry_utils
from mmengine.runner.checkpoint import CheckpointLoader

from .atomic_io import AtomicLocalBackend
from .checkpoint import (
    ModelZooUnavailableError,
    load_from_local_safe,
    torchvision_importable,
)

__all__ = ['disable_stack_fixes', 'enable_stack_fixes', 'stack_fixes_enabled']

MODEL_ZOO_PREFIXES = ('torchvision://', 'modelzoo://')

# mmengine's state before enable_stack_fixes(); None while disabled.
_saved: Optional[Dict[str, Any]] = None


def _model_zoo_loader(original: Callable) -> Callable:
    """mmengine's ``torchvision://`` loader where torchvision imports, else
    one clear refusal."""

    def load_from_model_zoo(filename: str, map_location=None):
        if not torchvision_importable():
            raise ModelZooUnavailableError.for_uri(filename)
        return original(filename, map_location)

    load_from_model_zoo.original = original
    return load_from_model_zoo


def _drop_cached_backends(cls: type) -> None:
    for key, backend in list(mmengine_io.backend_instances.items()):
        if type(backend) is cls:
            del mmengine_io.backend_instances[key]


def stack_fixes_enabled() -> bool:
    """Whether :func:`enable_stack_fixes` is in effect."""
    return _saved is not None


def enable_stack_fixes() -> None:
    """Turn on safe checkpoint loading, the ``torchvision://`` refusal (only
    without torchvision) and atomic local writes in mmengine. Idempotent."""
    global _saved
    if _saved is not None:
        return
    _saved = dict(
        schemes=CheckpointLoader._schemes.copy(),
        backends=registry_utils.backends.copy(),
        prefix_to_backends=registry_utils.prefix_to_backends.copy(),
    )
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_from_local_safe, force=True
    )
    for prefix in MODEL_ZOO_PREFIXES:
        original = CheckpointLoader._schemes.get(prefix)
        if original is not None:
            CheckpointLoader.register_scheme(
                prefixes=prefix, loader=_model_zoo_loader(original), force=True
            )
    registry_utils.register_backend(
        'local', AtomicLocalBackend, force=True, prefixes=''
    )
    _drop_cached_backends(LocalBackend)


def disable_stack_fixes() -> None:
    """Restore mmengine's loaders and file backends as they were before
    :func:`enable_stack_fixes`. Idempotent."""
    global _saved
    if _saved is None:
        return
    CheckpointLoader._schemes = _saved['schemes']
    for name, saved in (
        ('backends', _saved['backends']),
        ('prefix_to_backends', _saved['prefix_to_backends']),
    ):
        current = getattr(registry_utils, name)
        current.clear()
        current.update(saved)
    _drop_cached_backends(AtomicLocalBackend)
    _saved = None
