"""eca_mmdet.engine.checkpoint: weights_only loading with an exact allow-list,
refusal of pickles with other globals, and the torchvision:// prefix."""
import builtins
import collections
import os

import numpy as np
import pytest
import torch

pytest.importorskip('mmengine')

from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.runner.checkpoint import CheckpointLoader  # noqa: E402

import eca_mmdet.engine as engine  # noqa: E402
from eca_mmdet.engine import (CheckpointLoadError,  # noqa: E402
                              ModelZooUnavailableError, UnsafeCheckpointError)


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
        return (os.system, (f'touch {self.path}', ))


class _ArrayToFile:
    """Pickles as ``getattr(array, 'tofile')(path)``: only allowed globals
    (numpy arrays, getattr) but unpickling it writes ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (np.zeros(2).tofile, (self.path, ))


def _payload_checkpoint(path, payload, legacy=False):
    obj = dict(state_dict=collections.OrderedDict(w=torch.zeros(2)),
               meta=dict(epoch=1, hook=payload))
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def test_registered_on_import_and_idempotent():
    from eca_mmdet.engine.checkpoint import (load_from_local_safe,
                                             load_from_model_zoo_unavailable)
    assert CheckpointLoader._get_checkpoint_loader('/x/y.pth') is \
        load_from_local_safe  # by the import alone
    engine.register_safe_loading()
    engine.register_safe_loading()
    assert CheckpointLoader._get_checkpoint_loader('/x/y.pth') is \
        load_from_local_safe
    assert CheckpointLoader._get_checkpoint_loader('relative.pth') is \
        load_from_local_safe
    assert CheckpointLoader._get_checkpoint_loader(
        'torchvision://resnet50') is load_from_model_zoo_unavailable
    # other schemes are left to mmengine
    assert CheckpointLoader._get_checkpoint_loader(
        'https://x/y.pth') is not load_from_local_safe


def test_allow_list_is_exact():
    names = set(engine.safe_checkpoint_global_names())
    assert names == {
        'mmengine.logging.history_buffer.HistoryBuffer',
        'builtins.getattr',  # restricted: see test_getattr_is_restricted
        'numpy.core.multiarray._reconstruct',
        'numpy.core.multiarray.scalar',
        'numpy.ndarray',
        'numpy.dtype',
        'numpy.dtypes.Float64DType',
        'numpy.dtypes.Int64DType',
    }


def test_loads_what_a_message_hub_holds(tmp_path):
    buf = HistoryBuffer()
    buf.update(0.5)
    buf.update(np.float64(1.5))
    obj = dict(state_dict=collections.OrderedDict(w=torch.ones(3)),
               message_hub=dict(log_scalars={'train/loss': buf},
                                runtime_info=dict(epoch=2, iter=8)),
               meta=dict(epoch=2, scalar=np.float64(0.25)))
    path = tmp_path / 'ok.pth'
    torch.save(obj, path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert torch.equal(loaded['state_dict']['w'], torch.ones(3))
    hub_buf = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(hub_buf, HistoryBuffer)
    assert hub_buf.current() == 1.5
    assert loaded['meta']['scalar'] == 0.25


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
@pytest.mark.parametrize('kind', ['open', 'system'])
def test_payload_is_refused_and_never_runs(tmp_path, kind, legacy):
    target = tmp_path / f'created_by_{kind}'
    payload = _CreateFile(target) if kind == 'open' else _System(target)
    ckpt = _payload_checkpoint(tmp_path / 'evil.pth', payload, legacy=legacy)

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


def test_plain_state_dict_loads(tmp_path):
    path = tmp_path / 'sd.pth'
    sd = collections.OrderedDict(a=torch.arange(4.), b=torch.zeros(1))
    torch.save(sd, path)
    loaded = engine.safe_torch_load(path)
    assert list(loaded) == ['a', 'b']
    assert torch.equal(loaded['a'], sd['a'])


def test_getattr_is_restricted(tmp_path):
    target = tmp_path / 'written_by_tofile'
    ckpt = _payload_checkpoint(tmp_path / 'evil.pth', _ArrayToFile(target))
    with pytest.raises(UnsafeCheckpointError) as info:
        engine.safe_torch_load(ckpt)
    assert "builtins.getattr(ndarray, 'tofile')" in info.value.globals
    assert not target.exists()
    # the payload is real
    torch.load(ckpt, weights_only=False)
    assert target.exists()


def test_history_buffer_getattr():
    from eca_mmdet.engine.checkpoint import history_buffer_getattr
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in [(HistoryBuffer, 'update'), (HistoryBuffer, '__init__'),
                      (os, 'system'), (np.ndarray, 'tofile')]:
        with pytest.raises(Exception, match='refused'):
            history_buffer_getattr(obj, name)
