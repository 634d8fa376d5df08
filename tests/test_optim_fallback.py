"""FusedFallbackOptimWrapperConstructor: ``fused=True`` kept where the running
torch has the fused kernel for the parameters, dropped with one log line
elsewhere (torch 2.1 has no CPU fused AdamW), found by mmdet's registry."""

import pytest
import torch

pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import OPTIMIZERS, DefaultScope  # noqa: E402

import eca_mmdet  # noqa: E402,F401  (registers the constructor)
from eca_mmdet.engine import optim as eca_optim  # noqa: E402

SHAPES_CONFIG = eca_mmdet.config_path('shapes/mask_rcnn_ecaresnet18_shapes.py')


def _torch_version():
    return tuple(
        int(p) for p in torch.__version__.split('+')[0].split('.')[:2]
    )


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))


@pytest.fixture
def logged(monkeypatch):
    lines = []
    monkeypatch.setattr(
        eca_optim, 'print_log', lambda msg, **kw: lines.append(msg)
    )
    return lines


class _NoFusedAdamW(torch.optim.AdamW):
    """AdamW as on a torch without the fused kernel for these parameters."""

    def __init__(self, params, fused=None, **kwargs):
        if fused:
            raise RuntimeError('`fused=True` requires CUDA parameters')
        super().__init__(params, **kwargs)


@pytest.fixture
def no_fused_adamw():
    OPTIMIZERS.register_module(module=_NoFusedAdamW)
    yield '_NoFusedAdamW'
    OPTIMIZERS._module_dict.pop('_NoFusedAdamW')


def _optim_cfg(optimizer_type):
    return dict(
        constructor='FusedFallbackOptimWrapperConstructor',
        optimizer=dict(
            type=optimizer_type, lr=1e-3, weight_decay=0.05, fused=True
        ),
    )


def test_unavailable_fused_is_dropped_with_one_log_line(
    logged, no_fused_adamw
):
    wrapper = build_optim_wrapper(_model(), _optim_cfg(no_fused_adamw))
    assert type(wrapper.optimizer) is _NoFusedAdamW
    assert wrapper.optimizer.defaults['lr'] == 1e-3
    assert wrapper.optimizer.defaults['weight_decay'] == 0.05
    assert len(logged) == 1 and '\n' not in logged[0]
    assert '_NoFusedAdamW(fused=True) is not available' in logged[0]
    assert 'requires CUDA parameters' in logged[0]


@pytest.mark.skipif(
    _torch_version() < (2, 4), reason='CPU fused AdamW needs torch >= 2.4'
)
def test_available_fused_is_kept_and_built_as_mmengine_does(logged):
    model = _model()
    ours = build_optim_wrapper(model, _optim_cfg('AdamW'))
    stock_cfg = _optim_cfg('AdamW')
    del stock_cfg['constructor']
    stock = build_optim_wrapper(model, stock_cfg)
    assert logged == []
    assert ours.optimizer.defaults == stock.optimizer.defaults
    assert ours.optimizer.defaults['fused'] is True


def test_shapes_config_names_the_constructor_in_mmdet_scope(logged):
    """As mmdet's tools/train.py builds it (default scope mmdet); fused is
    kept exactly where torch >= 2.4 (CPU fused AdamW) runs."""
    cfg = Config.fromfile(SHAPES_CONFIG)
    assert cfg.optim_wrapper.constructor == (
        'FusedFallbackOptimWrapperConstructor'
    )
    assert cfg.optim_wrapper.optimizer.fused is True
    with DefaultScope.overwrite_default_scope('mmdet'):
        wrapper = build_optim_wrapper(_model(), cfg.optim_wrapper)
    has_cpu_fused = _torch_version() >= (2, 4)
    assert bool(wrapper.optimizer.defaults.get('fused')) == has_cpu_fused
    assert len(logged) == (0 if has_cpu_fused else 1)
    assert wrapper.optimizer.defaults['lr'] == cfg.optim_wrapper.optimizer.lr
