"""Training curves from mmengine's logs: losses, learning rate and
validation metrics per epoch, several runs overlaid.

mmengine's ``LocalVisBackend`` writes ``WORK_DIR/<timestamp>/vis_data/
scalars.json``, one JSON object per line: training lines carry ``epoch``,
``iter``, ``lr`` and the loss terms; validation lines carry the metrics
(``coco/bbox_mAP``, …) with ``step`` = epoch. A resumed run writes a new
``<timestamp>`` folder; its lines replace the older ones for the same
iteration or epoch.
"""

import fnmatch
import glob
import json
import math
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..engine.atomic_io import atomic_writer
from ..engine.errors import EcaMmdetError

__all__ = [
    'CurvesError',
    'RunCurves',
    'curve_panels',
    'plot_curves',
    'read_run_curves',
]

# The mAPs, and the ECA gates' distance between classes per stage when the
# run logged them (EcaGateStatsHook).
DEFAULT_VAL_KEYS = ('*mAP', 'eca/*_between')
# Logged by mmengine next to the losses, not worth a panel.
_NOT_CURVES = {
    'epoch',
    'iter',
    'step',
    'time',
    'data_time',
    'memory',
    'grad_norm',
    'acc',
}


class CurvesError(EcaMmdetError):
    """A work dir without logs, or a bad option of the curves tool."""


@dataclass
class RunCurves:
    """One run's per-epoch curves.

    Attributes:
        label: Name of the run in the legend.
        train: ``{key: {epoch: mean over the epoch's logged iterations}}``
            for ``loss``, every ``loss_*`` term and ``lr``.
        val: ``{metric: {epoch: value}}``.
    """

    label: str
    train: Dict[str, Dict[int, float]] = field(default_factory=dict)
    val: Dict[str, Dict[int, float]] = field(default_factory=dict)


def _scalar_files(work_dir: str) -> List[str]:
    return sorted(
        glob.glob(
            osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json')
        )
    )


def _finite(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def read_run_curves(work_dir: str, label: Optional[str] = None) -> RunCurves:
    """Per-epoch curves of the run in ``work_dir`` (all its ``scalars.json``,
    oldest first, so a resumed run's lines win).

    Raises:
        CurvesError: ``work_dir`` is not a folder or holds no training log.
    """
    if not osp.isdir(work_dir):
        raise CurvesError(f'work dir not found: {work_dir}')
    files = _scalar_files(work_dir)
    if not files:
        raise CurvesError(
            f'{work_dir} holds no training log (*/vis_data/scalars.json); '
            'is it the --work-dir of a tools/train.py run?'
        )
    by_iter: Dict[int, dict] = {}
    val: Dict[str, Dict[int, float]] = {}
    for path in files:
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut by a killed run
                if not isinstance(entry, dict):
                    continue
                if isinstance(entry.get('iter'), int) and isinstance(
                    entry.get('epoch'), int
                ):
                    by_iter[entry['iter']] = entry
                elif isinstance(entry.get('step'), int):
                    for key, value in entry.items():
                        if key not in _NOT_CURVES and _finite(value):
                            val.setdefault(key, {})[entry['step']] = value
    sums: Dict[str, Dict[int, Tuple[float, int]]] = {}
    for entry in by_iter.values():
        epoch = entry['epoch']
        for key, value in entry.items():
            if (key == 'lr' or key.startswith('loss')) and _finite(value):
                total, count = sums.setdefault(key, {}).get(epoch, (0.0, 0))
                sums[key][epoch] = (total + value, count + 1)
    train = {
        key: {
            epoch: total / count
            for epoch, (total, count) in sorted(per_epoch.items())
        }
        for key, per_epoch in sums.items()
    }
    return RunCurves(
        label or osp.basename(osp.normpath(work_dir)),
        train,
        {k: dict(sorted(v.items())) for k, v in val.items()},
    )


def curve_panels(
    runs: Sequence[RunCurves], val_keys: Sequence[str] = DEFAULT_VAL_KEYS
) -> List[str]:
    """The panels to draw, in order: ``loss``, the ``loss_*`` terms, ``lr``,
    then the validation metrics matching any of the ``val_keys`` patterns
    (fnmatch, e.g. ``'*mAP'``, ``'coco/bbox_mAP_50'``)."""
    train_keys = {k for run in runs for k in run.train}
    losses = sorted(k for k in train_keys if k.startswith('loss_'))
    panels = [k for k in ('loss', *losses, 'lr') if k in train_keys]
    metrics = sorted(
        {
            k
            for run in runs
            for k in run.val
            if any(fnmatch.fnmatchcase(k, p) for p in val_keys)
        }
    )
    return panels + metrics


def plot_curves(
    runs: Sequence[RunCurves],
    out: str,
    val_keys: Sequence[str] = DEFAULT_VAL_KEYS,
    title: Optional[str] = None,
) -> List[str]:
    """Draw ``runs`` overlaid, one panel per curve (:func:`curve_panels`),
    x = epoch, into the PNG ``out`` (written atomically). Returns the
    panels drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = curve_panels(runs, val_keys)
    if not panels:
        raise CurvesError(
            'nothing to plot: the logs hold no loss, lr or '
            f'validation metric matching {list(val_keys)}'
        )
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for index, key in enumerate(panels):
        ax = fig.add_subplot(rows, cols, index + 1)
        for run in runs:
            series = run.train.get(key) or run.val.get(key)
            if series:
                epochs = list(series)
                ax.plot(
                    epochs,
                    [series[e] for e in epochs],
                    marker='o',
                    markersize=3,
                    label=run.label,
                )
        ax.set_title(key, fontsize=10)
        ax.set_xlabel('epoch', fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if key == 'lr':
            ax.set_yscale('log')  # warm-up and steps span decades
    handles, labels = fig.axes[0].get_legend_handles_labels()
    for ax in fig.axes[1:]:
        if len(labels) >= len(runs):
            break
        handles, labels = ax.get_legend_handles_labels()
    top = 1.0
    if title:
        fig.text(0.5, top - 0.01, title, ha='center', va='top', fontsize=11)
        top -= 0.3 / fig.get_figheight()
    fig.legend(
        handles,
        labels,
        loc='upper center',
        ncol=min(len(runs), 4),
        fontsize=9,
        frameon=False,
        bbox_to_anchor=(0.5, top),
    )
    top -= 0.3 / fig.get_figheight()
    fig.tight_layout(rect=(0, 0, 1, top))
    with atomic_writer(out) as f:
        fig.savefig(f, format='png')
    return panels
