"""An optimizer-wrapper constructor that keeps ``fused=True`` only where the
running torch has the fused kernel.

torch's fused AdamW/Adam/SGD run on CPU since torch 2.4 (SGD's ``fused``
argument exists since 2.3); on torch 2.1 ``AdamW(fused=True)`` on CPU
parameters raises at construction. A config that asks for a fused optimizer
and names this constructor trains on every supported torch::

    optim_wrapper = dict(
        constructor='FusedFallbackOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=2e-3, fused=True))

Where the fused kernel works for the model's parameters the optimizer is
built exactly as mmengine's ``DefaultOptimWrapperConstructor`` builds it;
elsewhere ``fused`` is dropped (torch's default implementation computes the
same update) and one line in the log says so. Registered in mmengine's root
registry, so mmdet's own ``tools/train.py`` finds it too (with
``custom_imports=dict(imports=['eca_mmdet'])``).
"""

import logging
from typing import Any, Optional

import torch
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS

from .errors import first_line

__all__ = ['FusedFallbackOptimWrapperConstructor', 'fused_unavailable']


def fused_unavailable(
    optimizer_cls: Any, param: torch.Tensor, **kwargs: Any
) -> Optional[str]:
    """``None`` if ``optimizer_cls(..., fused=True, **kwargs)`` builds and
    steps on a parameter of ``param``'s device and dtype, else why not (the
    error torch raised, in one line)."""
    probe = torch.zeros(
        1, dtype=param.dtype, device=param.device, requires_grad=True
    )
    try:
        optimizer = optimizer_cls([probe], **dict(kwargs, fused=True))
        probe.grad = torch.zeros_like(probe)
        optimizer.step()
    except Exception as e:  # noqa: BLE001 - any failure means: not here
        return f'{type(e).__name__}: {first_line(e)}'
    return None


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FusedFallbackOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, with ``optimizer=dict(fused=True)``
    dropped where the running torch has no fused kernel for the model's
    parameters (see the module docstring)."""

    def __call__(self, model: torch.nn.Module) -> OptimWrapper:
        cfg = self.optimizer_cfg
        params = [p for p in model.parameters() if p.requires_grad]
        if cfg.get('fused') and params:
            optimizer_cls = cfg['type']
            if isinstance(optimizer_cls, str):
                with OPTIMIZERS.switch_scope_and_registry(None) as registry:
                    optimizer_cls = registry.get(cfg['type'])
            kwargs = {
                k: v for k, v in cfg.items() if k not in ('type', 'fused')
            }
            why = fused_unavailable(optimizer_cls, params[0], **kwargs)
            if why is not None:
                name = getattr(optimizer_cls, '__name__', cfg['type'])
                param = params[0]
                print_log(
                    f'{name}(fused=True) is not available for '
                    f'{param.device.type} {str(param.dtype)[6:]} parameters '
                    f'on torch {torch.__version__} ({why}); training with '
                    'its default implementation (the same algorithm)',
                    logger='current',
                    level=logging.WARNING,
                )
                self.optimizer_cfg = {
                    k: v for k, v in cfg.items() if k != 'fused'
                }
        return super().__call__(model)
