"""Training curves from mmengine's logs: losses, learning rate and
validation metrics per epoch, several runs overlaid.

mmengine's ``LocalVisBackend`` writes ``WORK_DIR/<timestamp>/vis_data/
scalars.json``, one JSON object per line: training lines carry ``epoch``,
``iter``, ``lr`` and the loss terms; validation lines carry the metrics
(``coco/bbox_mAP``, …) with ``step`` = epoch. A resumed run writes a new
``<timestamp>`` folder; its lines replace the older ones for the same
iteration or epoch. A fresh run into the same work dir (its first training
line in epoch 1) is another run: only the newest run is drawn, and a note
names the older folders left out. An epoch with a non-finite loss has a NaN
mean (a gap in the line) and a dotted marker; a line that is not JSON (cut
by a killed run) is left out with a note.
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
        nonfinite: ``{key: [epochs]}`` where a logged value was NaN or
            infinite (the epoch's mean is then NaN).
        notes: what the reader left out (lines that are not JSON, older
            runs in the same work dir), one line each.
        files: the ``scalars.json`` files read.
    """

    label: str
    train: Dict[str, Dict[int, float]] = field(default_factory=dict)
    val: Dict[str, Dict[int, float]] = field(default_factory=dict)
    nonfinite: Dict[str, List[int]] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)
    files: List[str] = field(default_factory=list)


def _scalar_files(work_dir: str) -> List[str]:
    return sorted(
        glob.glob(
            osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json')
        )
    )


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _number(value) and math.isfinite(value)


def _read_lines(path: str, notes: List[str]) -> List[dict]:
    """The JSON objects of ``path``, one per line; a line that is not JSON
    is left out with a note naming the file and the line."""
    entries, bad = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                bad.append(number)
                continue
            if isinstance(entry, dict):
                entries.append(entry)
    if bad:
        which = ', '.join(map(str, bad[:5])) + (' ...' if len(bad) > 5 else '')
        notes.append(
            f'{path}: left out {len(bad)} line(s) that are not JSON (line '
            f'{which}; cut by a killed run?)'
        )
    return entries


def _is_train(entry: dict) -> bool:
    return isinstance(entry.get('iter'), int) and isinstance(
        entry.get('epoch'), int
    )


def _newest_run(
    work_dir: str, files: List[str], notes: List[str]
) -> List[List[dict]]:
    """The lines of the newest run's files: from the last file whose first
    training line is in epoch 1 (a fresh start; a resumed run starts later)
    on. Older files belong to earlier runs into the same work dir."""
    contents = [_read_lines(path, notes) for path in files]
    start = 0
    for index, entries in enumerate(contents):
        first = next((e for e in entries if _is_train(e)), None)
        if first is not None and first['epoch'] <= 1 and index > 0:
            start = index
    if start:
        older = sorted(
            {osp.basename(osp.dirname(osp.dirname(f))) for f in files[:start]}
        )
        notes.append(
            f'{work_dir}: drew the newest run only (from '
            f'{osp.basename(osp.dirname(osp.dirname(files[start])))}); '
            f'left out {len(older)} older run(s) started anew in the same '
            f'work dir: {", ".join(older)}'
        )
    return contents[start:]


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
    notes: List[str] = []
    nonfinite: Dict[str, set] = {}
    for entries in _newest_run(work_dir, files, notes):
        for entry in entries:
            if _is_train(entry):
                by_iter[entry['iter']] = entry
            elif isinstance(entry.get('step'), int):
                for key, value in entry.items():
                    if key not in _NOT_CURVES and _number(value):
                        val.setdefault(key, {})[entry['step']] = value
                        if not math.isfinite(value):
                            nonfinite.setdefault(key, set()).add(entry['step'])
    sums: Dict[str, Dict[int, Tuple[float, int]]] = {}
    for entry in by_iter.values():
        epoch = entry['epoch']
        for key, value in entry.items():
            if (key == 'lr' or key.startswith('loss')) and _number(value):
                if not math.isfinite(value):  # the mean becomes NaN
                    nonfinite.setdefault(key, set()).add(epoch)
                total, count = sums.setdefault(key, {}).get(epoch, (0.0, 0))
                sums[key][epoch] = (total + value, count + 1)
    train = {
        key: {
            epoch: total / count if math.isfinite(total) else math.nan
            for epoch, (total, count) in sorted(per_epoch.items())
        }
        for key, per_epoch in sums.items()
    }
    run = RunCurves(
        label or osp.basename(osp.normpath(work_dir)),
        train,
        {k: dict(sorted(v.items())) for k, v in val.items()},
        {k: sorted(v) for k, v in sorted(nonfinite.items())},
        notes,
        files,
    )
    for key, epochs in run.nonfinite.items():
        notes.append(
            f'{work_dir}: {key} was NaN or infinite in epoch(s) '
            f'{", ".join(map(str, epochs))} (drawn as a gap and a dotted '
            'line)'
        )
    return run


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
    from matplotlib.lines import Line2D
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
        for number, run in enumerate(runs):
            color = f'C{number % 10}'  # one colour per run in every panel
            series = run.train.get(key) or run.val.get(key)
            if series:
                epochs = list(series)
                ax.plot(
                    epochs,
                    [series[e] for e in epochs],
                    marker='o',
                    markersize=3,
                    color=color,
                    label=run.label,
                )
            for epoch in run.nonfinite.get(key, ()):
                ax.axvline(epoch, color=color, linestyle=':', linewidth=1.5)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel('epoch', fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if key == 'lr':
            ax.set_yscale('log')  # warm-up and steps span decades
    handles = [
        Line2D([], [], color=f'C{n % 10}', marker='o', markersize=3)
        for n in range(len(runs))
    ]
    labels = [run.label for run in runs]
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
