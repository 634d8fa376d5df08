"""A restricted unpickler for checkpoints, usable as ``torch.load``'s
``pickle_module`` on every supported torch (2.0 to 2.13).

``torch.load(f, weights_only=False, pickle_module=safe_pickle)`` reads both
of torch's formats (zip and legacy) with :class:`Unpickler`, which differs
from the standard one in two places:

* :meth:`Unpickler.find_class` resolves exactly :func:`allowed_globals`:
  torch's own weights-only defaults of the running torch (tensor, storage,
  dtype and rebuild globals, ``collections.OrderedDict``, ...) plus
  :func:`safe_checkpoint_globals` (what an mmengine training checkpoint's
  ``message_hub`` holds). Any other global raises :class:`RefusedGlobal`
  naming it, before it is imported or called.
* ``BUILD`` (setting an object's state) is refused for classes, functions
  and modules, so a pickle cannot set attributes on an allowed class.

Only allowed globals can be called while unpickling, so a payload such as
``os.system(...)`` never runs. ``builtins.getattr`` (how pickle protocol 2
records ``HistoryBuffer.mean``) resolves to :func:`history_buffer_getattr`,
which answers only ``getattr(HistoryBuffer, <statistic>)``.

torch's own weights-only unpickler cannot be extended on torch < 2.5 (no
``torch.serialization.safe_globals``; torch 2.1's accepts only tensors and
OrderedDicts as objects), hence this module. It changes nothing in torch or
pickle: the allow-list applies to the loads that pass this module.
"""

import _compat_pickle
import codecs
import collections
import io
import pickle
import pickletools
import types
import zipfile
from typing import Any, BinaryIO, Dict, List

import numpy as np
from mmengine.logging import HistoryBuffer
from torch import _weights_only_unpickler

__all__ = [
    'HISTORY_BUFFER_STATISTICS',
    'RefusedGlobal',
    'Unpickler',
    'UnpicklingError',
    'allowed_globals',
    'checkpoint_global_names',
    'history_buffer_getattr',
    'load',
    'loads',
    'safe_checkpoint_global_names',
    'safe_checkpoint_globals',
]

UnpicklingError = pickle.UnpicklingError

# HistoryBuffer's built-in statistics; the buffer pickles its
# ``statistics_methods`` as ``getattr(HistoryBuffer, name)``.
HISTORY_BUFFER_STATISTICS = ('current', 'max', 'mean', 'min')


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle needed something outside the allow-list; ``name`` says what
    (e.g. ``posix.system`` or ``builtins.getattr(ndarray, 'tofile')``)."""

    def __init__(self, name: str):
        super().__init__(f'eca_mmdet refused {name}')
        self.name = name


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return obj.__qualname__
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    return type(obj).__qualname__


def history_buffer_getattr(obj: Any, name: Any, *default: Any) -> Any:
    """Stands for ``builtins.getattr`` while loading a checkpoint, but only
    resolves ``getattr(HistoryBuffer, <statistic>)``; anything else (e.g.
    ``getattr(some_array, 'tofile')``) is refused (:class:`RefusedGlobal`,
    an ``UnpicklingError``)."""
    if (
        obj is HistoryBuffer
        and not default
        and isinstance(name, str)
        and name in HISTORY_BUFFER_STATISTICS
    ):
        return getattr(obj, name)
    raise RefusedGlobal(f'builtins.getattr({_describe(obj)}, {name!r})')


def _numpy_globals() -> Dict[str, Any]:
    """numpy's array/scalar reconstructors under both module spellings
    (``numpy.core`` is what numpy 1 pickles, ``numpy._core`` numpy 2), taken
    from numpy's own reduce so no deprecated module is imported."""
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    out = {}
    for core in ('numpy.core', 'numpy._core'):
        out[f'{core}.multiarray._reconstruct'] = reconstruct
        out[f'{core}.multiarray.scalar'] = scalar
    return out


def _name_of(obj: Any) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


def safe_checkpoint_globals() -> Dict[str, Any]:
    """The globals allowed on top of torch's weights-only defaults, by the
    name pickle records them under.

    Exactly what an mmengine training checkpoint of this project holds besides
    tensors and plain containers: the ``message_hub`` keeps
    :class:`~mmengine.logging.HistoryBuffer` objects, whose state is numpy
    arrays (``_reconstruct``, ``ndarray``, ``dtype``; their raw data pickles
    as ``_codecs.encode(...)``, in torch's defaults since torch 2.2), float64
    numpy scalars (``scalar``) and the buffers' statistics methods, pickled as
    ``builtins.getattr(HistoryBuffer, 'mean')`` etc. ``builtins.getattr``
    itself is not allowed: :func:`history_buffer_getattr` stands in its place.
    """
    allowed = {
        _name_of(HistoryBuffer): HistoryBuffer,
        'builtins.getattr': history_buffer_getattr,
        'numpy.ndarray': np.ndarray,
        'numpy.dtype': np.dtype,
        '_codecs.encode': codecs.encode,
    }
    allowed.update(_numpy_globals())
    return allowed


def safe_checkpoint_global_names() -> List[str]:
    """Names (as pickle records them) of :func:`safe_checkpoint_globals`."""
    return sorted(safe_checkpoint_globals())


def allowed_globals() -> Dict[str, Any]:
    """Everything :class:`Unpickler` resolves, by pickled name: torch's
    weights-only defaults of the running torch (``_get_allowed_globals``,
    there since torch 1.13: what its tensors, parameters, storages and dtypes
    pickle as) and :func:`safe_checkpoint_globals`. User additions to torch's
    list (``torch.serialization.add_safe_globals``) are not included."""
    allowed = dict(_weights_only_unpickler._get_allowed_globals())
    allowed.update(safe_checkpoint_globals())
    return allowed


def _canonical(module: str, name: str, proto: int) -> str:
    """``module.name`` with Python 2 names mapped as pickle maps them."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    if module == 'torch.tensor':  # torch's own rename (pytorch#51633)
        module = 'torch._tensor'
    return f'{module}.{name}'


_BUILD = pickle._Unpickler.dispatch[pickle.BUILD[0]]


class Unpickler(pickle._Unpickler):
    """The pure-Python unpickler with an exact allow-list for globals and no
    ``BUILD`` on classes, functions or modules (see the module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)
    _allowed = None

    def find_class(self, module: str, name: str) -> Any:
        if self._allowed is None:
            self._allowed = allowed_globals()
        qualified = _canonical(module, name, self.proto)
        if qualified not in self._allowed:
            raise RefusedGlobal(qualified)
        return self._allowed[qualified]

    def load_build(self) -> None:
        inst = self.stack[-2]
        if callable(inst) or isinstance(inst, types.ModuleType):
            what = getattr(inst, '__qualname__', None)
            what = _name_of(inst) if what else _describe(inst)
            raise RefusedGlobal(f'setting attributes of {what}')
        _BUILD(self)

    dispatch[pickle.BUILD[0]] = load_build


def load(file: BinaryIO, **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`Unpickler`."""
    return Unpickler(file, **kwargs).load()


def loads(data: bytes, **kwargs: Any) -> Any:
    """``pickle.loads`` with :class:`Unpickler`."""
    return load(io.BytesIO(data), **kwargs)


_STRING_OPS = {
    'STRING',
    'BINSTRING',
    'SHORT_BINSTRING',
    'UNICODE',
    'BINUNICODE',
    'SHORT_BINUNICODE',
    'BINUNICODE8',
}
_GET_OPS = {'GET', 'BINGET', 'LONG_BINGET'}
_PUT_OPS = {'PUT', 'BINPUT', 'LONG_BINPUT'}


def _pickle_globals(stream: BinaryIO) -> List[str]:
    """The globals one pickle in ``stream`` names, read statically (nothing
    of it is built or run)."""
    found, memo = [], {}
    recent = collections.deque([None, None], maxlen=2)  # last two pushes
    proto = 0
    for op, arg, _ in pickletools.genops(stream):
        if op.name == 'PROTO':
            proto = arg
        elif op.name in ('GLOBAL', 'INST'):
            module, name = arg.split(' ', 1)
            found.append(_canonical(module, name, proto))
        elif op.name == 'STACK_GLOBAL':
            module, name = recent
            if isinstance(module, str) and isinstance(name, str):
                found.append(_canonical(module, name, proto))
        if op.name in _STRING_OPS:
            recent.append(arg)
        elif op.name in _GET_OPS:
            recent.append(memo.get(arg))
        elif op.name in _PUT_OPS:
            memo[arg] = recent[-1]
        elif op.name == 'MEMOIZE':
            memo[len(memo)] = recent[-1]
        elif op.stack_after:
            recent.append(None)
    return found


def checkpoint_global_names(filename: str) -> List[str]:
    """Every global the pickles of a torch checkpoint name (zip or legacy
    format), read statically; ``[]`` where the file cannot be parsed."""
    names: List[str] = []
    try:
        if zipfile.is_zipfile(filename):
            with zipfile.ZipFile(filename) as archive:
                for member in archive.namelist():
                    if member == 'data.pkl' or member.endswith('/data.pkl'):
                        names += _pickle_globals(
                            io.BytesIO(archive.read(member))
                        )
        else:  # legacy: magic number, protocol, sys info, the objects
            with open(filename, 'rb') as f:
                for _ in range(4):
                    names += _pickle_globals(f)
    except Exception:  # noqa: BLE001 - truncated or not a pickle
        pass
    return sorted(set(names))
