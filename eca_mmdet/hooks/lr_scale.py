"""Scale the learning rate of a (resumed) run."""

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class ScaleLrHook(Hook):
    """Multiply the learning rate by ``factor`` when training starts, after a
    resume has restored the optimizer and schedulers (whose saved rates would
    otherwise override a new ``optimizer.lr``). ``tools/train.py --lr-scale``
    adds it; e.g. ``--resume --lr-scale 0.1`` after a non-finite loss.

    Args:
        factor (float): Factor applied to every parameter group's rate and to
            the learning-rate schedulers' base rates.
    """

    priority = 'VERY_HIGH'

    def __init__(self, factor: float) -> None:
        if not factor > 0:
            raise ValueError(f'lr scale factor must be > 0, got {factor}')
        self.factor = factor

    def before_train(self, runner) -> None:
        wrappers = runner.optim_wrapper
        wrappers = (
            wrappers.values() if hasattr(wrappers, 'values') else [wrappers]
        )
        for wrapper in wrappers:
            for group in wrapper.optimizer.param_groups:
                group['lr'] *= self.factor
                if 'initial_lr' in group:
                    group['initial_lr'] *= self.factor
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for scheduler in schedulers:
            if getattr(scheduler, 'param_name', None) == 'lr':
                scheduler.base_values = [
                    v * self.factor for v in scheduler.base_values
                ]
                scheduler._last_value = [
                    v * self.factor for v in scheduler._last_value
                ]
