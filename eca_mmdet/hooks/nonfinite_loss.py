"""Stop training at the first non-finite loss, with a message that says
what to do, before a NaN reaches a checkpoint."""

import math
import os.path as osp
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from ..engine.errors import EcaMmdetError


class NonFiniteLossError(EcaMmdetError):
    """A loss term became NaN or infinite; training stopped."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise :class:`NonFiniteLossError` naming the iteration and the loss
    term(s) when a loss is not finite.

    It runs after each training iteration, before any checkpoint of that
    epoch is written, so the last checkpoint on disk stays the last good one;
    the message says how to resume from it with a lower learning rate (or,
    before the first checkpoint, to train again with one).
    ``tools/train.py`` adds this hook to every run.

    Args:
        interval (int): Check every ``interval`` iterations. Defaults to 1
            (the loss values are already computed: the check is free).
    """

    priority = 'VERY_HIGH'

    def __init__(self, interval: int = 1) -> None:
        self.interval = interval

    def after_train_iter(
        self,
        runner,
        batch_idx: int,
        data_batch: Optional[dict] = None,
        outputs: Optional[dict] = None,
    ) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        bad = [
            f'{name}={_scalar(value)}'
            for name, value in outputs.items()
            if 'loss' in name and not math.isfinite(_scalar(value))
        ]
        if not bad:
            return
        where = (
            f'non-finite loss at iteration {runner.iter + 1} (epoch '
            f'{runner.epoch + 1}): {", ".join(bad)}. Training stopped'
        )
        clip = (
            '(and/or clip gradients: --cfg-options '
            'optim_wrapper.clip_grad.max_norm=10)'
        )
        last = _last_checkpoint(runner.work_dir)
        if last is None:
            raise NonFiniteLossError(
                f'{where}; no checkpoint was written yet in '
                f'{runner.work_dir}. Train again from the start with a lower '
                f'learning rate: tools/train.py CONFIG --lr-scale 0.1 {clip}'
            )
        raise NonFiniteLossError(
            f'{where}; the checkpoints in {runner.work_dir} were left as '
            f'they were. Resume from the last one ({last}) with a lower '
            'learning rate: tools/train.py CONFIG --resume --lr-scale 0.1 '
            f'{clip}'
        )


def _last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``--resume`` would pick in ``work_dir``, if any."""
    from mmengine.runner import find_latest_checkpoint

    path = find_latest_checkpoint(work_dir)
    return path if path and osp.isfile(path) else None


def _scalar(value) -> float:
    return float(value.detach()) if hasattr(value, 'detach') else float(value)
