"""Training-progress frames and GIFs: epoch checkpoints, val mAP from the
training log, captioned prediction grids, GIF writing.

Used by ``tools/progress_gif.py`` (offline, from the ``epoch_*.pth`` of a
work dir) and by :class:`eca_mmdet.hooks.ProgressGifHook` (online, after
each validation).
"""

import glob
import json
import math
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..engine.atomic_io import atomic_writer
from .render import VisualizationError, check_score_thr, get_font, make_grid
from .visualizer import StableColorDetVisualizer, resize_sample

__all__ = [
    'epoch_checkpoints',
    'read_val_metrics',
    'format_caption',
    'compose_frame',
    'frame_note',
    'MAX_INSTANCES',
    'write_gif',
    'frame_files',
]

CAPTION_HEIGHT = 24
METRIC_KEYS = (('bbox', 'bbox_mAP'), ('segm', 'segm_mAP'))


def _epoch_of(path: str, prefix: str) -> Optional[int]:
    m = re.fullmatch(re.escape(prefix) + r'(\d+)\.\w+', osp.basename(path))
    return int(m.group(1)) if m else None


def _epoch_files(directory: str, ext: str) -> List[Tuple[int, str]]:
    """``[(epoch, path)]`` of ``directory/epoch_<n>.<ext>``, numeric order."""
    found = []
    for path in glob.glob(osp.join(glob.escape(directory), f'epoch_*.{ext}')):
        epoch = _epoch_of(path, 'epoch_')
        if epoch is not None:
            found.append((epoch, path))
    return sorted(found)


def epoch_checkpoints(work_dir: str) -> List[Tuple[int, str]]:
    """``[(epoch, path)]`` of ``work_dir/epoch_<n>.pth``, numeric order."""
    return _epoch_files(work_dir, 'pth')


def frame_files(frames_dir: str) -> List[Tuple[int, str]]:
    """``[(epoch, path)]`` of ``frames_dir/epoch_<n>.png``, numeric order."""
    return _epoch_files(frames_dir, 'png')


def _pick_metrics(entry: dict) -> Dict[str, float]:
    """``{'bbox': mAP, 'segm': mAP}`` from a metrics dict (``coco/`` keys
    first, any ``.../bbox_mAP`` otherwise)."""
    out = {}
    for short, key in METRIC_KEYS:
        value = entry.get(f'coco/{key}')
        if value is None:
            for k, v in entry.items():
                if isinstance(k, str) and (k == key or k.endswith('/' + key)):
                    value = v
                    break
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:  # CocoMetric logs -1: n/a
            out[short] = value
    return out


def read_val_metrics(work_dir: str) -> Dict[int, Dict[str, float]]:
    """Validation mAP per epoch from mmengine's logs in ``work_dir``.

    Reads every ``work_dir/<timestamp>/vis_data/scalars.json`` (one JSON
    object per line; validation lines carry ``coco/bbox_mAP`` and
    ``coco/segm_mAP`` with ``step`` = epoch), oldest run first so a resumed
    run's values win. Returns ``{epoch: {'bbox': x, 'segm': y}}`` with the
    metrics that are known.
    """
    files = sorted(
        glob.glob(
            osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json')
        )
    )
    metrics: Dict[int, Dict[str, float]] = {}
    for path in files:
        try:
            with open(path) as f:
                lines = f.readlines()
        except OSError:
            continue
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            found = _pick_metrics(entry)
            step = entry.get('epoch', entry.get('step'))
            if found and isinstance(step, int) and step > 0:
                metrics.setdefault(step, {}).update(found)
    return metrics


def format_caption(
    epoch: int, metrics: Optional[Dict[str, float]] = None
) -> str:
    """``'epoch 3   bbox mAP 0.412   segm mAP 0.380'`` (``n/a`` if unknown)."""
    metrics = dict(metrics or {})
    if not set(metrics) <= {'bbox', 'segm'}:  # raw keys like coco/bbox_mAP
        metrics = _pick_metrics(metrics)
    parts = [f'epoch {epoch}']
    for short, _ in METRIC_KEYS:
        value = metrics.get(short)
        parts.append(
            f'{short} mAP ' + (f'{value:.3f}' if value is not None else 'n/a')
        )
    return '   '.join(parts)


MAX_INSTANCES = 10  # drawn per image of a frame, the highest scores


def _drawn_sample(data_sample, score_thr: float, max_instances: Optional[int]):
    """``(sample, above)``: a sample holding only the predictions a frame
    draws (scoring above ``score_thr``, the ``max_instances`` highest
    scores) and how many scored above ``score_thr``. The other predictions
    are neither copied nor resized: the cost of a frame depends on what it
    draws."""
    pred = data_sample.get('pred_instances')
    if pred is None or 'scores' not in pred:
        return data_sample, None
    scores = pred.scores.detach().cpu()
    above = int((scores > score_thr).sum())
    keep = min(above, max_instances) if max_instances is not None else above
    order = torch.argsort(scores, descending=True)[:keep]
    order = order[scores[order] > score_thr]  # NaN scores are not drawn
    sample = type(data_sample)(metainfo=data_sample.metainfo)
    sample.pred_instances = pred[order.to(pred.scores.device)]
    return sample, above


def frame_note(
    above: Optional[int], shown: int, score_thr: float
) -> Optional[str]:
    """The line a cell of a frame carries when it shows no prediction, or
    not all of the ``above`` scoring above ``score_thr``: ``'nothing >
    0.30'``, ``'top 10 (more > 0.30)'``; ``None`` otherwise."""
    if above is None:
        return None
    if above == 0:
        return f'nothing > {score_thr:.2f}'
    if shown < above:
        return f'top {shown} (more > {score_thr:.2f})'
    return None


def _put_note(image: np.ndarray, note: str) -> np.ndarray:
    """``note`` in white on a dark strip at the bottom left of ``image``,
    in the largest font up to 1/16 of the image that fits its width."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for font_size in range(max(8, min(pil.size) // 16), 5, -1):
        font = get_font(font_size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), note, font=font)
        if x1 - x0 + 6 <= pil.width:
            break
    top = pil.height - (y1 - y0 + 4)
    draw.rectangle((0, top, x1 - x0 + 6, pil.height), fill=(0, 0, 0))
    draw.text((3 - x0, top + 2 - y0), note, fill=(255, 255, 255), font=font)
    return np.asarray(pil)


def compose_frame(
    visualizer: StableColorDetVisualizer,
    images: Sequence[np.ndarray],
    data_samples: Sequence,
    caption: str,
    size: int = 256,
    cols: Optional[int] = None,
    score_thr: float = 0.3,
    max_instances: Optional[int] = MAX_INSTANCES,
) -> Image.Image:
    """One GIF frame: a caption strip on top of a grid of the images with
    their predictions scoring above ``score_thr``, at most the
    ``max_instances`` highest scores per image (``None``: all), each drawn
    at ``size`` px (longer side) in a ``size`` x ``size`` cell. A cell
    showing no prediction, or not all above ``score_thr``, says so at its
    bottom (:func:`frame_note`). The layout depends only on the number of
    images, ``size`` and ``cols``."""
    score_thr = check_score_thr(score_thr)
    if max_instances is not None and int(max_instances) < 1:
        raise VisualizationError(
            f'max_instances must be >= 1 or None, got {max_instances!r}'
        )
    drawn = []
    for img, sample in zip(images, data_samples):
        sample, above = _drawn_sample(sample, score_thr, max_instances)
        img, sample = resize_sample(img, sample, size)
        visualizer.add_datasample(
            'progress_image',
            img,
            sample,
            draw_gt=False,
            pred_score_thr=score_thr,
            out_file=None,
        )
        cell = visualizer.get_image()
        shown = len(sample.pred_instances) if above is not None else 0
        note = frame_note(above, shown, score_thr)
        drawn.append(_put_note(cell, note) if note else cell)
    grid = make_grid(
        drawn, cols=cols, cell=(size, size), pad=2, background=(32, 32, 32)
    )
    frame = Image.new(
        'RGB', (grid.width, grid.height + CAPTION_HEIGHT), (32, 32, 32)
    )
    frame.paste(grid, (0, CAPTION_HEIGHT))
    draw = ImageDraw.Draw(frame)
    # the largest font that fits the width; long captions lose their spaces
    text, font = caption, None
    for candidate in (caption, ' '.join(caption.split())):
        for font_size in range(CAPTION_HEIGHT - 8, 7, -1):
            font = get_font(font_size)
            if draw.textlength(candidate, font=font) <= frame.width - 8:
                text = candidate
                break
        else:
            continue
        break
    draw.text((4, 4), text, fill=(255, 255, 255), font=font)
    return frame


def write_gif(
    frames: Sequence[Union[str, Image.Image]],
    out_file: str,
    fps: float = 2.0,
    hold_last: int = 2,
) -> str:
    """Write ``frames`` (images or paths, same size) as a looping GIF.

    All frames share one palette (computed from all of them), so colours do
    not flicker between frames; the last frame is shown ``hold_last`` times
    as long. Written atomically (a temp file renamed into place).
    """
    if not frames:
        raise VisualizationError('no frames for the GIF')
    pil = []
    for fr in frames:
        if isinstance(fr, str):
            with Image.open(fr) as f:
                fr = f.convert('RGB')
        pil.append(fr.convert('RGB'))
    size = pil[0].size
    pil = [fr if fr.size == size else fr.resize(size) for fr in pil]
    # shared palette from a thumbnail strip of all frames
    thumb_w = max(1, size[0] // 2)
    thumb_h = max(1, size[1] // 2)
    strip = Image.new('RGB', (thumb_w, thumb_h * len(pil)))
    for i, fr in enumerate(pil):
        strip.paste(
            fr.resize((thumb_w, thumb_h), Image.NEAREST), (0, i * thumb_h)
        )
    palette = strip.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    quantized = [
        fr.quantize(palette=palette, dither=Image.Dither.NONE) for fr in pil
    ]
    duration = max(20, int(round(1000.0 / max(fps, 1e-3))))
    durations = [duration] * len(quantized)
    durations[-1] = duration * max(1, hold_last)
    with atomic_writer(out_file) as f:  # readers never see a partial GIF
        quantized[0].save(
            f,
            format='GIF',
            save_all=True,
            append_images=quantized[1:],
            duration=durations if len(durations) > 1 else durations[0],
            loop=0,
            disposal=1,
            optimize=False,
        )
    return out_file
