"""What ECA learned: statistics and figures of recorded gates.

A :class:`GateSet` holds the gate (sigmoid output per channel) of every ECA
block for each image and the classes in each image. From it:

* :func:`class_means`: each class's mean gate per block (a multi-class
  image counts for each of its classes);
* :func:`class_offsets`: blocks x classes, how far each class's mean gate is
  from the mean over all images (root mean square over channels);
* :func:`stage_stats`: per stage, the mean and std of all gate values and
  the mean distance between two classes' mean gates (RMS over channels,
  averaged over class pairs and the stage's blocks);
* :func:`no_information`: whether the gates carry any information at all
  (a gate that is the same on every image cannot tell classes apart), and
  :func:`barely_moving`: whether they all stay within 0.001 of 0.5;
* the figures: :func:`plot_class_lines` (the ECA paper's figure),
  :func:`plot_offset_heatmap`, :func:`plot_stage_histograms`.

Distances are root mean squares over channels, so blocks of different
widths compare on the gate's own 0-1 scale.
"""

import itertools
import math
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..engine.atomic_io import atomic_writer
from ..engine.errors import EcaMmdetError
from ..models.gate_recording import stage_of
from .visualizer import fixed_palette

__all__ = [
    'AttentionError',
    'GateSet',
    'between_by_chance',
    'barely_moving',
    'class_means',
    'class_offsets',
    'default_line_blocks',
    'load_gates',
    'no_information',
    'plot_class_lines',
    'offset_heatmap_figure',
    'plot_offset_heatmap',
    'plot_stage_histograms',
    'save_gates',
    'stage_stats',
]

_META_KEYS = (
    'blocks',
    'image_ids',
    'image_files',
    'class_names',
    'image_classes',
)


class AttentionError(EcaMmdetError):
    """Bad input for the attention explorer."""


# gates the same on every image to within this are constant (float32
# rounding: one float32 step at 0.5 is 6e-8; see no_information)
NO_INFORMATION_TOL = 1e-6
# gates all within this of 0.5 barely move (see barely_moving)
BARELY_MOVING_TOL = 1e-3


@dataclass
class GateSet:
    """Gates of ``len(image_files)`` images.

    Attributes:
        blocks: Block names in network order (``layer1.0``, ...).
        gates: ``{block: (images, channels) float32}``.
        image_ids: One id per image (COCO id, or the index).
        image_files: One path per image.
        class_names: The classes.
        image_classes: (images, classes) bool: which classes each image has.
    """

    blocks: List[str]
    gates: Dict[str, np.ndarray]
    image_ids: np.ndarray
    image_files: List[str]
    class_names: List[str] = field(default_factory=list)
    image_classes: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        n = len(self.image_files)
        if self.image_classes is None:
            self.image_classes = np.zeros((n, len(self.class_names)), bool)
        assert self.image_classes.shape == (n, len(self.class_names))
        assert all(self.gates[b].shape[0] == n for b in self.blocks)

    def stages(self) -> Dict[str, List[str]]:
        """``{'stage1': [blocks], ...}`` in network order."""
        out: Dict[str, List[str]] = {}
        for block in self.blocks:
            out.setdefault(stage_of(block), []).append(block)
        return out

    def classes_of(self, index: int) -> List[str]:
        """The class names of image ``index``."""
        row = self.image_classes[index]  # one column per class name
        return [c for c, has in zip(self.class_names, row) if has]


def save_gates(path: str, gate_set: GateSet) -> None:
    """Write ``gate_set`` as an ``.npz``: one array per block (its name,
    images x channels) and ``blocks``, ``image_ids``, ``image_files``,
    ``class_names``, ``image_classes`` (images x classes, bool)."""
    clash = set(gate_set.blocks) & set(_META_KEYS)
    if clash:
        raise AttentionError(f'block names clash with npz keys: {clash}')
    arrays = {b: gate_set.gates[b] for b in gate_set.blocks}
    arrays.update(
        blocks=np.array(gate_set.blocks, dtype=str),
        image_ids=np.asarray(gate_set.image_ids),
        image_files=np.array(gate_set.image_files, dtype=str),
        class_names=np.array(gate_set.class_names, dtype=str),
        image_classes=gate_set.image_classes,
    )
    with atomic_writer(path) as f:
        np.savez_compressed(f, **arrays)


def load_gates(path: str) -> GateSet:
    """Read a :func:`save_gates` file."""
    with np.load(path) as data:
        blocks = [str(b) for b in data['blocks']]
        return GateSet(
            blocks,
            {b: data[b] for b in blocks},
            data['image_ids'],
            [str(f) for f in data['image_files']],
            [str(c) for c in data['class_names']],
            data['image_classes'].astype(bool),
        )


def class_means(gate_set: GateSet) -> Dict[str, np.ndarray]:
    """``{block: (classes, channels)}`` mean gate over the images holding
    each class (NaN rows for classes without images)."""
    member = gate_set.image_classes.astype(np.float64)  # images, K
    counts = member.sum(0)[:, None]
    out = {}
    for block in gate_set.blocks:
        sums = member.T @ gate_set.gates[block].astype(np.float64)
        with np.errstate(invalid='ignore', divide='ignore'):
            out[block] = np.where(counts > 0, sums / counts, np.nan)
    return out


def _rms(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.sqrt(np.mean(np.square(a), axis=axis))


def class_offsets(gate_set: GateSet) -> np.ndarray:
    """(blocks, classes): RMS over channels of (class mean gate - mean gate
    of all images); NaN for classes without images."""
    means = class_means(gate_set)
    rows = []
    for block in gate_set.blocks:
        overall = gate_set.gates[block].astype(np.float64).mean(0)
        rows.append(_rms(means[block] - overall))
    return np.array(rows).reshape(
        len(gate_set.blocks), len(gate_set.class_names)
    )


def _between(means: np.ndarray) -> float:
    """Mean over class pairs of the RMS distance of two mean gates (NaN
    with fewer than two classes present)."""
    present = means[~np.isnan(means).any(1)]
    pairs = list(itertools.combinations(range(len(present)), 2))
    if not pairs:
        return math.nan
    return float(np.mean([_rms(present[i] - present[j]) for i, j in pairs]))


def _stage_between(gate_set: GateSet) -> Dict[str, float]:
    """``{stage: mean over its blocks of _between}`` (NaN without two
    classes present)."""
    means = class_means(gate_set) if gate_set.class_names else {}
    out = {}
    for stage, blocks in gate_set.stages().items():
        values = [_between(means[b]) for b in blocks] if means else []
        values = [v for v in values if not math.isnan(v)]
        out[stage] = float(np.mean(values)) if values else math.nan
    return out


def stage_stats(gate_set: GateSet) -> Dict[str, Dict[str, float]]:
    """``{stage: {'mean', 'std', 'between'}}``: mean and std of all gate
    values of the stage's blocks (images x channels), and the mean distance
    between classes (see :func:`_between`), averaged over the blocks."""
    between = _stage_between(gate_set)
    out = {}
    for stage, blocks in gate_set.stages().items():
        values = np.concatenate([gate_set.gates[b].ravel() for b in blocks])
        out[stage] = dict(
            mean=float(values.mean()),
            std=float(values.std()),
            between=between[stage],
        )
    return out


def between_by_chance(
    gate_set: GateSet, rounds: int = 100, seed: int = 0
) -> Dict[str, Dict[str, float]]:
    """What :func:`stage_stats`' ``between`` is when the images' class sets
    are shuffled among the images (same class counts): ``{stage: {'mean',
    'q95', 'p'}}``, ``p`` the share of shuffles at least as far apart as
    the real classes. A real ``between`` near ``mean`` (``p`` not small)
    is what classes without any effect on the gates give."""
    observed = _stage_between(gate_set)
    rng = np.random.default_rng(seed)
    null: Dict[str, List[float]] = {s: [] for s in observed}
    for _ in range(rounds):
        order = rng.permutation(len(gate_set.image_files))
        shuffled = GateSet(
            gate_set.blocks,
            gate_set.gates,
            gate_set.image_ids,
            gate_set.image_files,
            gate_set.class_names,
            gate_set.image_classes[order],
        )
        for stage, value in _stage_between(shuffled).items():
            null[stage].append(value)
    out = {}
    for stage, values in null.items():
        values = np.array(values)
        if np.isnan(values).all():
            out[stage] = dict(mean=math.nan, q95=math.nan, p=math.nan)
            continue
        out[stage] = dict(
            mean=float(np.nanmean(values)),
            q95=float(np.nanquantile(values, 0.95)),
            p=float(np.mean(values >= observed[stage])),
        )
    return out


def _largest(gate_set: GateSet, of) -> float:
    return max(
        float(of(gate_set.gates[b].astype(np.float64)).max())
        for b in gate_set.blocks
    )


def no_information(
    gate_set: GateSet, tol: float = NO_INFORMATION_TOL
) -> Optional[str]:
    """Why the gates of ``gate_set`` carry no information, or ``None``.

    A gate carries information about an image only if it changes with the
    image. The gates carry none when every gate of every block is 0.5
    (within ``tol``: zero ECA weights, or residual branches still at their
    zero initialisation, whose pooled output is 0) or, with two images or
    more, when no gate changes by ``tol`` or more (max - min) across the
    images: then ECA scales each channel by a fixed factor, whatever the
    image, and the differences between classes in the figures are float
    rounding. ``tol`` defaults to 1e-6, about 17 float32 steps at 0.5.
    Returns a short reason, e.g. ``'every gate is 0.5 (within 1e-06)'``.
    Gates that do change, however little, are not flagged: see
    :func:`barely_moving`.
    """
    if not gate_set.blocks or not gate_set.image_files:
        return None
    away = _largest(gate_set, lambda g: np.abs(g - 0.5))
    if away < tol:
        return f'every gate is 0.5 (within {tol:g})'
    n = len(gate_set.image_files)
    if n < 2:
        return None
    spread = _largest(gate_set, lambda g: np.ptp(g, axis=0))
    if spread < tol:
        return (
            f'no gate changes by {tol:g} across the {n} images '
            f'(at most {spread:.2g})'
        )
    return None


def barely_moving(
    gate_set: GateSet, tol: float = BARELY_MOVING_TOL
) -> Optional[str]:
    """``'every gate is within 0.001 of 0.5 (at most 0.00055 away)'`` when
    all gates are that close to 0.5 (ECA then scales every channel by
    about 0.5, e.g. after a few epochs from zero-initialised residual
    branches: the differences the figures show are at most that large),
    else ``None``."""
    if not gate_set.blocks or not gate_set.image_files:
        return None
    away = _largest(gate_set, lambda g: np.abs(g - 0.5))
    if away < tol:
        return f'every gate is within {tol:g} of 0.5 (at most {away:.2g} away)'
    return None


def default_line_blocks(gate_set: GateSet) -> List[str]:
    """The last block of each stage: the paper's figure shows one block per
    stage."""
    return [blocks[-1] for blocks in gate_set.stages().values()]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _plain_ticks(axis, nbins: Optional[int] = None) -> None:
    """Tick labels as plain numbers: no offset or exponent text at the
    axis end (it would overlap the title or the map); at most ``nbins``
    intervals (long labels of a narrow range stay apart)."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)
    if nbins:
        axis.set_major_locator(MaxNLocator(nbins=nbins))


def _colorbar(fig, image, ax, label: str, high: float):
    """A colour bar for ``image`` (values from 0 to ``high``) without an
    offset or exponent text: values under 0.01 are shown in units of a power
    of ten named in the label, e.g. ``2.5`` and ``(x 1e-4)``."""
    from matplotlib.ticker import FuncFormatter

    cbar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
    exponent = int(math.floor(math.log10(high))) if high > 0 else 0
    if exponent < -2:
        scale = 10.0**-exponent
        cbar.formatter = FuncFormatter(lambda v, _: f'{v * scale:g}')
        label = f'{label} (x 1e{exponent})'
    else:
        _plain_ticks(cbar.ax.yaxis)
    cbar.update_ticks()
    cbar.set_label(label, fontsize=8)
    return cbar


def _save(fig, out: str) -> str:
    with atomic_writer(out) as f:
        fig.savefig(f, format='png')
    return out


def _class_colors(n: int) -> List[tuple]:
    return [tuple(v / 255 for v in c) for c in fixed_palette(n)]


def plot_class_lines(
    gate_set: GateSet,
    out: str,
    blocks: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> str:
    """The ECA paper's figure: for each of ``blocks`` (default
    :func:`default_line_blocks`) a panel of the mean gate per channel, one
    line per class (and all images, dashed). Returns ``out``."""
    blocks = list(blocks or default_line_blocks(gate_set))
    unknown = [b for b in blocks if b not in gate_set.gates]
    if unknown:
        raise AttentionError(
            f'no such ECA block: {", ".join(unknown)} '
            f'(blocks: {", ".join(gate_set.blocks)})'
        )
    means = class_means(gate_set)
    counts = gate_set.image_classes.sum(0)
    colors = _class_colors(len(gate_set.class_names))
    cols = min(2, len(blocks))
    rows = math.ceil(len(blocks) / cols)
    fig = _figure(6.0 * cols, 2.8 * rows + 0.6)
    for i, block in enumerate(blocks):
        ax = fig.add_subplot(rows, cols, i + 1)
        channels = np.arange(gate_set.gates[block].shape[1])
        for k, name in enumerate(gate_set.class_names):
            if counts[k]:
                ax.plot(
                    channels,
                    means[block][k],
                    color=colors[k],
                    lw=1.1,
                    label=f'{name} ({counts[k]})',
                )
        ax.plot(
            channels,
            gate_set.gates[block].mean(0),
            color='0.2',
            lw=0.9,
            ls='--',
            label=f'all images ({len(gate_set.image_files)})',
        )
        ax.set_title(f'{block} ({stage_of(block)})', fontsize=10)
        ax.set_xlabel('channel', fontsize=8)
        ax.set_ylabel('mean gate', fontsize=8)
        ax.set_xlim(0, max(channels[-1], 1))
        _plain_ticks(ax.yaxis)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    top = 1.0 - 0.45 / fig.get_figheight()
    fig.legend(
        handles,
        labels,
        loc='upper center',
        frameon=False,
        ncol=min(len(labels), 6),
        fontsize=9,
        bbox_to_anchor=(0.5, 1.0),
    )
    if title:
        fig.suptitle(title, y=0.01, va='bottom', fontsize=9)
    fig.tight_layout(rect=(0, 0.03 if title else 0, 1, top))
    return _save(fig, out)


def plot_offset_heatmap(
    gate_set: GateSet, out: str, title: Optional[str] = None
) -> str:
    """Blocks (rows) x classes (columns): :func:`class_offsets`, annotated
    with the values. Returns ``out``."""
    return _save(offset_heatmap_figure(gate_set, title), out)


def offset_heatmap_figure(gate_set: GateSet, title: Optional[str] = None):
    """The matplotlib figure of :func:`plot_offset_heatmap`."""
    if not gate_set.class_names:
        raise AttentionError(
            'no classes: the heat map needs images with '
            'classes (annotations or predictions)'
        )
    offsets = class_offsets(gate_set)
    n_blocks, n_classes = offsets.shape
    fig = _figure(1.6 + 1.1 * n_classes, 1.2 + 0.32 * n_blocks)
    ax = fig.add_subplot(1, 1, 1)
    finite = offsets[np.isfinite(offsets)]
    high = float(finite.max()) if finite.size else 0.0
    image = ax.imshow(
        np.ma.masked_invalid(offsets),
        cmap='viridis',
        aspect='auto',
        vmin=0,
        # all zero (no information): a scale up to the tolerance
        vmax=high if high > 0 else BARELY_MOVING_TOL,
    )
    ax.set_xticks(
        range(n_classes),
        gate_set.class_names,
        fontsize=8,
        rotation=30 if n_classes > 6 else 0,
    )
    ax.set_yticks(range(n_blocks), gate_set.blocks, fontsize=7)
    if n_blocks * n_classes <= 400:
        for (r, c), v in np.ndenumerate(offsets):
            if np.isfinite(v):
                ax.text(
                    c,
                    r,
                    f'{v:.2g}',
                    ha='center',
                    va='center',
                    fontsize=6,
                    color='w' if v < 0.6 * high else 'k',
                )
    _colorbar(
        fig,
        image,
        ax,
        'RMS(class mean - all-image mean)',
        high if high > 0 else BARELY_MOVING_TOL,
    )
    ax.set_title(
        title or "how far each class's mean gate is from the mean", fontsize=9
    )
    fig.tight_layout()
    return fig


def plot_stage_histograms(
    gate_set: GateSet,
    out: str,
    bins: int = 50,
    title: Optional[str] = None,
) -> str:
    """One panel per stage: the distribution of all its gate values (images
    x channels x blocks) on [0, 1], with the stage's mean and std, under
    ``title`` if given. Returns ``out``."""
    stages = gate_set.stages()
    stats = stage_stats(gate_set)
    cols = min(4, len(stages))
    rows = math.ceil(len(stages) / cols)
    fig = _figure(3.2 * cols, 2.6 * rows)
    for i, (stage, blocks) in enumerate(stages.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        values = np.concatenate([gate_set.gates[b].ravel() for b in blocks])
        # float64 bin edges: float32 ones cannot split the narrow range of
        # a barely trained model's gates into ``bins`` bins
        ax.hist(values.astype(np.float64), bins=bins, color='tab:blue')
        ax.axvline(0.5, color='0.3', lw=0.8, ls='--')
        s = stats[stage]
        ax.set_title(
            f'{stage}: {len(blocks)} blocks\nmean {s["mean"]:.3f} '
            f'std {s["std"]:.3f}',
            fontsize=9,
        )
        ax.set_xlabel('gate', fontsize=8)
        _plain_ticks(ax.xaxis, nbins=3)
        ax.tick_params(labelsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def out_paths(out_dir: str) -> Dict[str, str]:
    """The files the attention explorer writes into ``out_dir``."""
    return {
        k: osp.join(out_dir, f)
        for k, f in (
            ('gates', 'gates.npz'),
            ('lines', 'class_mean_gates.png'),
            ('heatmap', 'class_offsets.png'),
            ('hist', 'stage_histograms.png'),
            ('stats', 'stage_stats.json'),
        )
    }
