"""eca_mmdet.engine.checkpoint: loading with an exact allow-list (the
restricted unpickler of eca_mmdet.engine.safe_pickle), refusal of pickles with
other globals in both of torch's formats, and the torchvision:// prefix."""

import builtins
import collections
import os
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')

from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.runner.checkpoint import CheckpointLoader  # noqa: E402

import eca_mmdet.engine as engine  # noqa: E402
from eca_mmdet.engine import (
    CheckpointLoadError,  # noqa: E402
    ModelZooUnavailableError,
    UnsafeCheckpointError,
    safe_pickle,  # noqa: E402
)


class _CreateFile:
    """Pickles as ``open(path, 'w')``: unpickling it creates ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, 'w'))


class _System:
    """Pickles as ``os.system('touch path')``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f'touch {self.path}',))


class _ArrayToFile:
    """Pickles as ``getattr(array, 'tofile')(path)``: only allowed globals
    (numpy arrays, getattr) but unpickling it writes ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (np.zeros(2).tofile, (self.path,))


def _payload_checkpoint(path, payload, legacy=False, protocol=2):
    obj = dict(
        state_dict=collections.OrderedDict(w=torch.zeros(2)),
        meta=dict(epoch=1, hook=payload),
    )
    torch.save(
        obj,
        path,
        _use_new_zipfile_serialization=not legacy,
        pickle_protocol=protocol,
    )
    return path


@pytest.fixture(autouse=True, scope='module')
def stack_fixes():
    """The loader under test is installed explicitly (``import eca_mmdet``
    changes nothing: see test_import_changes_nothing_in_mmengine)."""
    was_enabled = engine.stack_fixes_enabled()
    engine.enable_stack_fixes()
    yield
    if not was_enabled:
        engine.disable_stack_fixes()


# Runs in a fresh process: what mmengine/torch hold before and after an import.
SNAPSHOT = r"""
import json, sys
import torch
from mmengine.fileio import io as fio
from mmengine.fileio.backends import registry_utils as reg
from mmengine.runner.checkpoint import CheckpointLoader

def name(obj):
    obj = obj if isinstance(obj, type) or callable(obj) else type(obj)
    return f'{getattr(obj, "__module__", "?")}.{getattr(obj, "__qualname__", obj)}'

def safe_globals():
    # torch >= 2.5: defaults + user additions; older: the fixed defaults
    get = getattr(torch.serialization, 'get_safe_globals', None)
    if get is not None:
        return sorted(map(str, get()))
    from torch import _weights_only_unpickler as w
    return sorted(w._get_allowed_globals())

def snapshot():
    return dict(
        schemes={k: name(v) for k, v in CheckpointLoader._schemes.items()},
        backends={k: name(v) for k, v in reg.backends.items()},
        prefixes={k: name(v) for k, v in reg.prefix_to_backends.items()},
        instances=sorted(name(v) for v in fio.backend_instances.values()),
        safe_globals=safe_globals(),
        local=name(fio.get_file_backend('/tmp/x.pth')))

before = snapshot()
for module in sys.argv[1:]:
    __import__(module)
print(json.dumps(dict(before=before, after=snapshot())))
"""


def _snapshot(*modules):
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, '-c', SNAPSHOT, *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.splitlines()[-1])


def test_import_changes_nothing_in_mmengine():
    """``import eca_mmdet`` (what custom_imports does) only adds registry
    entries; the opt-in module does change the loaders (so this can fail)."""
    plain = _snapshot('mmdet.models', 'eca_mmdet')
    assert plain['before'] == plain['after']
    fixed = _snapshot('mmdet.models', 'eca_mmdet', 'eca_mmdet.stack_fixes')
    before, after = fixed['before'], fixed['after']
    assert after['schemes'][''].endswith('load_from_local_safe')
    assert before['schemes'][''].endswith('load_from_local')
    assert after['local'].endswith('AtomicLocalBackend')
    assert before['local'].endswith('.LocalBackend')
    # torch's own safe globals are never touched, even by the opt-in
    assert before['safe_globals'] == after['safe_globals']


def test_enable_is_explicit_idempotent_and_reversible():
    from mmengine.fileio import LocalBackend, get_file_backend
    from mmengine.runner.checkpoint import load_from_local

    from eca_mmdet.engine import AtomicLocalBackend
    from eca_mmdet.engine.checkpoint import load_from_local_safe

    engine.disable_stack_fixes()
    try:
        assert not engine.stack_fixes_enabled()
        assert (
            CheckpointLoader._get_checkpoint_loader('/x/y.pth')
            is load_from_local
        )
        assert type(get_file_backend('/x/y.pth')) is LocalBackend
        tv_stock = CheckpointLoader._get_checkpoint_loader('torchvision://r')
        engine.enable_stack_fixes()
        engine.enable_stack_fixes()
        for path in ('/x/y.pth', 'relative.pth'):
            assert (
                CheckpointLoader._get_checkpoint_loader(path)
                is load_from_local_safe
            )
        assert type(get_file_backend('/x/y.pth')) is AtomicLocalBackend
        # other schemes are left to mmengine
        assert (
            CheckpointLoader._get_checkpoint_loader('https://x/y.pth')
            is not load_from_local_safe
        )
        engine.disable_stack_fixes()
        assert (
            CheckpointLoader._get_checkpoint_loader('/x/y.pth')
            is load_from_local
        )
        assert (
            CheckpointLoader._get_checkpoint_loader('torchvision://r')
            is tv_stock
        )
        assert type(get_file_backend('/x/y.pth')) is LocalBackend
    finally:
        engine.enable_stack_fixes()


def test_allow_list_is_exact():
    names = set(engine.safe_checkpoint_global_names())
    assert names == {
        'mmengine.logging.history_buffer.HistoryBuffer',
        'builtins.getattr',  # restricted: see test_getattr_is_restricted
        'numpy.core.multiarray._reconstruct',  # numpy 1's name
        'numpy.core.multiarray.scalar',
        'numpy._core.multiarray._reconstruct',  # numpy 2's name
        'numpy._core.multiarray.scalar',
        'numpy.ndarray',
        'numpy.dtype',
        '_codecs.encode',  # an array's data in pickle protocol 2
    }
    # on top of torch's own weights-only defaults, and nothing else
    from torch import _weights_only_unpickler

    torch_defaults = _weights_only_unpickler._get_allowed_globals()
    assert 'torch._utils._rebuild_tensor_v2' in torch_defaults
    assert set(safe_pickle.allowed_globals()) == names | set(torch_defaults)


def _varied_state():
    """Tensors of many kinds, as torch's own weights_only=True loads them."""
    return collections.OrderedDict(
        f32=torch.randn(3, 4),
        f16=torch.randn(2).half(),
        bf16=torch.randn(2).bfloat16(),
        i8=torch.arange(-3, 3, dtype=torch.int8),
        boolean=torch.tensor([True, False]),
        view=torch.arange(10.0)[2:8:2],  # a strided view of one storage
        channels_last=torch.randn(1, 3, 2, 2).to(
            memory_format=torch.channels_last
        ),
        param=torch.nn.Parameter(torch.ones(2)),
        nested=dict(lst=[torch.zeros(1), 3, 'x'], tup=(1.5, None), n=7),
    )


def _assert_same(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.stride() == b.stride()
        assert torch.equal(a, b)
        assert a.requires_grad == b.requires_grad
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_returns_what_torch_weights_only_returns(tmp_path, legacy):
    path = tmp_path / 'varied.pth'
    torch.save(
        _varied_state(), path, _use_new_zipfile_serialization=not legacy
    )
    ours = engine.safe_torch_load(path, map_location='cpu')
    _assert_same(ours, torch.load(path, map_location='cpu', weights_only=True))


def test_loads_what_a_message_hub_holds(tmp_path):
    buf = HistoryBuffer()
    buf.update(0.5)
    buf.update(np.float64(1.5))
    obj = dict(
        state_dict=collections.OrderedDict(w=torch.ones(3)),
        message_hub=dict(
            log_scalars={'train/loss': buf}, runtime_info=dict(epoch=2, iter=8)
        ),
        meta=dict(epoch=2, scalar=np.float64(0.25)),
    )
    path = tmp_path / 'ok.pth'
    torch.save(obj, path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(3))
    hub_buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(hub_buf, HistoryBuffer)
    assert hub_buf.current() == 1.5
    assert loaded['meta']['scalar'] == 0.25


@pytest.mark.parametrize(
    'legacy,protocol',
    [(False, 2), (True, 2), (False, 4)],
    ids=['zip', 'legacy', 'zip-protocol4'],
)
@pytest.mark.parametrize('kind', ['open', 'system'])
def test_payload_is_refused_and_never_runs(tmp_path, kind, legacy, protocol):
    target = tmp_path / f'created_by_{kind}'
    payload = _CreateFile(target) if kind == 'open' else _System(target)
    ckpt = _payload_checkpoint(
        tmp_path / 'evil.pth', payload, legacy=legacy, protocol=protocol
    )

    with pytest.raises(UnsafeCheckpointError) as info:
        CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
    err = info.value
    assert err.filename == str(ckpt)
    expected = 'io.open' if kind == 'open' else 'posix.system'
    assert expected in err.globals, err.globals
    assert str(ckpt) in str(err) and expected in str(err)
    assert not target.exists()

    with pytest.raises(UnsafeCheckpointError):
        engine.safe_torch_load(ckpt)
    assert not target.exists()


def test_payload_would_run_if_unpickled_unsafely(tmp_path):
    """The planted payload is real: the full unpickler creates the file
    (so the refusal test above can fail)."""
    target = tmp_path / 'created'
    ckpt = _payload_checkpoint(tmp_path / 'evil.pth', _CreateFile(target))
    torch.load(ckpt, weights_only=False)
    assert target.exists()


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointLoadError, match='not found'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nope.pth'))
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointLoadError, match=str(bad)):
        CheckpointLoader.load_checkpoint(str(bad))


def test_torchvision_prefix_is_a_clear_error():
    for uri in ('torchvision://resnet50', 'modelzoo://resnet50'):
        with pytest.raises(ModelZooUnavailableError) as info:
            CheckpointLoader.load_checkpoint(uri)
        msg = str(info.value)
        assert uri in msg
        assert 'tools/convert_weights.py' in msg
        assert 'init_cfg' in msg


def test_torchvision_prefix_is_mmengines_where_torchvision_imports(
    monkeypatch,
):
    """With an importable torchvision the request reaches mmengine's own
    loader (here it fails inside it: the stand-in has no models)."""
    import sys
    import types

    from mmengine.runner import checkpoint as mm_ckpt

    calls = []
    monkeypatch.setitem(
        sys.modules, 'torchvision', types.ModuleType('torchvision')
    )
    loader = CheckpointLoader._get_checkpoint_loader('torchvision://r50')
    monkeypatch.setattr(
        mm_ckpt,
        'get_torchvision_models',
        lambda: calls.append(1) or {'r50': 'file:///none'},
    )
    monkeypatch.setattr(
        mm_ckpt, 'load_from_http', lambda url, map_location=None: {'url': url}
    )
    assert loader('torchvision://r50') == {'url': 'file:///none'}
    assert calls == [1]


def test_plain_state_dict_loads(tmp_path):
    path = tmp_path / 'sd.pth'
    sd = collections.OrderedDict(a=torch.arange(4.0), b=torch.zeros(1))
    torch.save(sd, path)
    loaded = engine.safe_torch_load(path)
    assert list(loaded) == ['a', 'b']
    assert torch.equal(loaded['a'], sd['a'])


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_getattr_is_restricted(tmp_path, legacy):
    target = tmp_path / 'written_by_tofile'
    ckpt = _payload_checkpoint(
        tmp_path / 'evil.pth', _ArrayToFile(target), legacy=legacy
    )
    with pytest.raises(UnsafeCheckpointError) as info:
        engine.safe_torch_load(ckpt)
    assert info.value.globals == ["builtins.getattr(ndarray, 'tofile')"]
    assert not target.exists()
    # the payload is real
    torch.load(ckpt, weights_only=False)
    assert target.exists()


def _function_state_pickle(name):
    """``BUILD`` on torch's ``_rebuild_parameter`` (an allowed global) with
    the slot state ``{name: 1}``: the standard unpickler sets that attribute
    on the function (``__defaults__`` would change how later loads run)."""
    return (
        b'\x80\x02ctorch._utils\n_rebuild_parameter\nq\x00'
        + b'N}q\x01X'
        + len(name).to_bytes(4, 'little')
        + name.encode()
        + b'K\x01s\x86q\x02b.'
    )


def test_attributes_of_a_global_are_never_set():
    name = 'eca_mmdet_test_attribute'
    data = _function_state_pickle(name)
    target = torch._utils._rebuild_parameter
    with pytest.raises(
        safe_pickle.RefusedGlobal,
        match='setting attributes of torch._utils._rebuild_parameter',
    ):
        safe_pickle.loads(data)
    assert not hasattr(target, name)
    # the pickle is real: the standard unpickler sets the attribute
    try:
        assert pickle.loads(data) is target
        assert getattr(target, name) == 1
    finally:
        if hasattr(target, name):
            delattr(target, name)


def test_forced_weights_only_is_one_clear_line(tmp_path, monkeypatch):
    path = tmp_path / 'sd.pth'
    torch.save(dict(w=torch.zeros(1)), path)
    monkeypatch.setenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', '1')
    with pytest.raises(CheckpointLoadError) as info:
        engine.safe_torch_load(path)
    msg = str(info.value)
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' in msg and '\n' not in msg


def test_history_buffer_getattr():
    from eca_mmdet.engine.checkpoint import history_buffer_getattr

    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in [
        (HistoryBuffer, 'update'),
        (HistoryBuffer, '__init__'),
        (os, 'system'),
        (np.ndarray, 'tofile'),
    ]:
        with pytest.raises(Exception, match='refused'):
            history_buffer_getattr(obj, name)


def _truncated(path):
    torch.save(dict(state_dict=dict(w=torch.zeros(1000))), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    'kind,content,expected',
    [
        ('empty', b'', 'is empty (0 bytes)'),
        (
            'text',
            b'epoch_3.pth\n',
            'is not a PyTorch checkpoint (a text file '
            "starting with 'epoch_3.pth')",
        ),
        (
            'html',
            b'<!DOCTYPE html>\n<html><body>404</body></html>',
            'is not a PyTorch checkpoint (an HTML/XML page',
        ),
        (
            'lfs',
            b'version https://git-lfs.github.com/spec/v1\noid sha256:ab\n',
            'Git LFS pointer',
        ),
        (
            'binary',
            bytes(range(200, 256)) * 4,
            'not a zip archive or a pickle',
        ),
        ('truncated', None, 'is truncated or corrupt'),
    ],
)
def test_unreadable_files_say_what_is_wrong(tmp_path, kind, content, expected):
    """What --resume, tools/test.py and load_from (mmengine's loader), the
    demo and the converter (safe_torch_load) report for such files."""
    path = tmp_path / f'{kind}.pth'
    if content is None:
        _truncated(path)
    else:
        path.write_bytes(content)
    for load in (
        engine.safe_torch_load,
        lambda p: CheckpointLoader.load_checkpoint(p, 'cpu'),
    ):
        with pytest.raises(CheckpointLoadError) as info:
            load(str(path))
        msg = str(info.value)
        assert msg.startswith(f'checkpoint {path} '), msg
        assert expected in msg, msg
        assert '\n' not in msg and 'weights_only=False' not in msg
