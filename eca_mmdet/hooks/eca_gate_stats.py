"""Per-stage statistics of the ECA gates after every validation, logged as
the run's scalars (``vis_data/scalars.json``), so ``tools/plot_curves.py``
draws how the attention develops during training::

    custom_hooks = [dict(type='EcaGateStatsHook')]

Logged per stage (``eca/stage1_mean``, ``eca/stage1_std``,
``eca/stage1_between``, ...): the mean and std of all gate values of the
validation images, and the mean distance between classes' mean gates
(:func:`eca_mmdet.visualization.attention.stage_stats`; an image's classes
are its ground-truth labels). The gates are those of the validation
forward passes themselves (batched as the val loader batches), recorded by
:func:`eca_mmdet.models.record_gates`: nothing is run twice.
"""

from typing import Dict, List, Optional

import numpy as np
from mmdet.registry import HOOKS
from mmengine.dist import all_gather_object
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..models import eca_layers, record_gates
from ..visualization.attention import GateSet, stage_stats

__all__ = ['EcaGateStatsHook']


@HOOKS.register_module()
class EcaGateStatsHook(Hook):
    """Log per-stage ECA gate statistics after each validation.

    Args:
        prefix (str): Scalar names are ``<prefix>/<stage>_<stat>``.
            Defaults to ``'eca'``.
    """

    # before LoggerHook (BELOW_NORMAL) writes the validation line
    priority = 'NORMAL'

    def __init__(self, prefix: str = 'eca') -> None:
        self.prefix = prefix
        self._context = None
        self._recorder = None
        self._rows: Dict[str, List[np.ndarray]] = {}
        self._labels: List[List[int]] = []
        self._warned = False

    @staticmethod
    def _backbone(runner):
        model = (
            runner.model.module
            if is_model_wrapper(runner.model)
            else runner.model
        )
        return getattr(model, 'backbone', model)

    def before_val_epoch(self, runner) -> None:
        self._stop()
        backbone = self._backbone(runner)
        if not eca_layers(backbone):
            if not self._warned:
                runner.logger.warning(
                    'EcaGateStatsHook: the model has no ECA layers; no gate '
                    'statistics are logged'
                )
                self._warned = True
            return
        self._rows, self._labels = {}, []
        self._context = record_gates(backbone)
        self._recorder = self._context.__enter__()

    def after_val_iter(
        self,
        runner,
        batch_idx: int,
        data_batch: Optional[dict] = None,
        outputs=None,
    ) -> None:
        if self._recorder is None:
            return
        gates = self._recorder.take()
        samples = (data_batch or {}).get('data_samples') or []
        n = len(samples)
        if not n or not gates:
            return
        for name, rows in gates.items():  # the batch's first forward
            self._rows.setdefault(name, []).append(rows[:n].numpy())
        for sample in samples:
            inst = sample.get('gt_instances')
            labels = (
                []
                if inst is None or 'labels' not in inst
                else sorted(set(inst.labels.tolist()))
            )
            self._labels.append(labels)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._recorder is None:
            return
        names = list(self._recorder.names)
        self._stop()
        local = (
            {n: np.concatenate(r) for n, r in self._rows.items()},
            self._labels,
        )
        self._rows, self._labels = {}, []
        parts = all_gather_object(local)
        labels = [lb for _, part in parts for lb in part]
        if not labels:
            return
        names = [n for n in names if all(n in g for g, _ in parts)]
        gates = {n: np.concatenate([g[n] for g, _ in parts]) for n in names}
        classes = list(
            (runner.val_dataloader.dataset.metainfo or {}).get('classes') or ()
        )
        num = max([len(classes)] + [max(lb) + 1 for lb in labels if lb])
        membership = np.zeros((len(labels), num), bool)
        for row, lbs in enumerate(labels):
            membership[row, lbs] = True
        class_names = classes + [str(i) for i in range(len(classes), num)]
        gate_set = GateSet(
            names,
            gates,
            np.arange(len(labels)),
            [''] * len(labels),
            class_names,
            membership,
        )
        for stage, stats in stage_stats(gate_set).items():
            for key, value in stats.items():
                if np.isfinite(value):
                    runner.message_hub.update_scalar(
                        f'val/{self.prefix}/{stage}_{key}', float(value)
                    )

    def after_run(self, runner) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = self._recorder = None
