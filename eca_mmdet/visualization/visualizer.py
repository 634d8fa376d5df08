"""The visualizer of the project: mmdet's
:class:`~mmdet.visualization.DetLocalVisualizer` with one fixed colour per
class.

mmdet's visualizer jitters every mask colour with the global numpy RNG, so the
same class gets a different colour in every image and every run.
:class:`StableColorDetVisualizer` keeps mmdet's machinery (the matplotlib
canvas, the ``VISUALIZERS`` registry, the ``vis_backends``,
``add_datasample(draw_gt=..., draw_pred=...)``, ``DetVisualizationHook``) and
only replaces the instance drawing: the colour of a class is a pure function
of the dataset's metainfo (see :func:`class_palette`), whatever else is in the
image. Put it in a config with::

    visualizer = dict(type='StableColorDetVisualizer',
                      vis_backends=[dict(type='LocalVisBackend')])
"""

import colorsys
import math
import warnings
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmdet.registry import VISUALIZERS
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmdet.visualization import DetLocalVisualizer, get_palette
from mmengine.structures import InstanceData

from .render import check_score_thr, save_image

__all__ = [
    'StableColorDetVisualizer',
    'class_palette',
    'fixed_palette',
    'gt_in_image_frame',
    'rescale_instances',
    'resize_sample',
]

Color = Tuple[int, int, int]
Region = Tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive) in pixels
PANEL_GAP = 4  # white pixels between the GT and the prediction panel


# ----------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------
def fixed_palette(num_classes: int) -> List[Color]:
    """``num_classes`` well separated RGB colours, the same on every call.

    Hues step by the golden ratio (neighbouring class indices get distant
    hues); every tenth class starts a darker band. Colour ``i`` depends only
    on ``i``: ``fixed_palette(n)[:k] == fixed_palette(k)``.
    """
    colors = []
    for i in range(num_classes):
        hue = (i * 0.6180339887498949) % 1.0
        value = 0.95 if (i // 10) % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, value)
        colors.append(
            (int(round(r * 255)), int(round(g * 255)), int(round(b * 255)))
        )
    return colors


def _coco_metainfo() -> Tuple[tuple, List[Color]]:
    from mmdet.datasets import CocoDataset

    meta = CocoDataset.METAINFO
    return tuple(meta['classes']), [tuple(c) for c in meta['palette']]


def class_palette(dataset_meta: Optional[dict]) -> List[Color]:
    """One RGB colour per class of ``dataset_meta`` (``classes``, ``palette``).

    * A ``palette`` list with its own colours is used as given (extended with
      :func:`fixed_palette` colours if it is shorter than ``classes``).
    * mmdet's datasets inherit COCO's 80-colour palette when a config only
      overrides ``classes``; then classes named like COCO classes keep their
      COCO colour and other class sets get :func:`fixed_palette`.
    * A palette name ('random', 'coco', ...) goes through mmdet's
      ``get_palette`` (all deterministic).

    The colour of class ``i`` depends only on the metainfo, never on which
    classes appear in an image.
    """
    meta = dict(dataset_meta or {})
    classes = tuple(meta.get('classes') or ())
    num = max(len(classes), 1)
    palette = meta.get('palette')
    if palette is None or (isinstance(palette, str) and palette == 'none'):
        return fixed_palette(num)
    if isinstance(palette, str):
        return [tuple(int(v) for v in c) for c in get_palette(palette, num)]
    palette = [tuple(int(v) for v in c) for c in palette]
    coco_classes, coco_palette = _coco_metainfo()
    inherited = (
        len(palette) >= len(coco_palette)
        and palette[: len(coco_palette)] == coco_palette
        and classes != coco_classes[: len(classes)]
    )
    if inherited:
        if classes and all(c in coco_classes for c in classes):
            return [coco_palette[coco_classes.index(c)] for c in classes]
        return fixed_palette(num)
    if len(palette) < num:
        palette = palette + fixed_palette(num)[len(palette) :]
    return palette


def _text_color(color: Color) -> Color:
    """Black or white, whichever reads better on ``color``."""
    r, g, b = color
    return (
        (0, 0, 0)
        if 0.299 * r + 0.587 * g + 0.114 * b > 150
        else (255, 255, 255)
    )


# ----------------------------------------------------------------------------
# The visualizer
# ----------------------------------------------------------------------------
def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _masks_to_numpy(masks) -> np.ndarray:
    if isinstance(masks, (BitmapMasks, PolygonMasks)):
        masks = masks.to_ndarray()
    return _to_numpy(masks).astype(bool)


@VISUALIZERS.register_module()
class StableColorDetVisualizer(DetLocalVisualizer):
    """:class:`DetLocalVisualizer` with one fixed colour per class.

    Masks are filled with the class colour at ``mask_alpha``, boxes are drawn
    in the class colour, and each instance gets a label ``"<class> <score>"``
    on a patch of its class colour (at the box's top-left corner, or the
    mask's centroid for box-less predictions). Colours come from
    :func:`class_palette` of ``dataset_meta``. ``line_width=None`` picks a
    width from the image size.

    After each :meth:`draw_instances` the pixel rectangles covered by the
    labels are in :attr:`label_regions` (so a caller or a test knows exactly
    which pixels may have changed).
    """

    def __init__(
        self,
        name: str = 'eca_visualizer',
        mask_alpha: float = 0.5,
        line_width: Optional[float] = None,
        font_scale: float = 1.0,
        **kwargs,
    ) -> None:
        kwargs.setdefault('alpha', 1.0)
        super().__init__(name=name, line_width=line_width or 1, **kwargs)
        self.auto_line_width = line_width is None
        self.mask_alpha = mask_alpha
        self.font_scale = font_scale
        self.label_regions: List[Region] = []

    # DetLocalVisualizer.add_datasample calls this for GT and predictions.
    def _draw_instances(
        self,
        image: np.ndarray,
        instances,
        classes: Optional[Sequence[str]],
        palette=None,
    ) -> np.ndarray:
        return self.draw_instances(image, instances)

    def set_meta(
        self, dataset_meta: Optional[dict]
    ) -> 'StableColorDetVisualizer':
        """Set ``dataset_meta`` (``classes``, ``palette``); returns self."""
        self.dataset_meta = dict(dataset_meta or {})
        return self

    def draw_instances(
        self, image: np.ndarray, instances: InstanceData
    ) -> Optional[np.ndarray]:
        """Draw all ``instances`` (no score filtering; an ``InstanceData``
        with ``labels`` and any of ``bboxes``, ``masks``, ``scores``) on the
        RGB ``image``; returns the
        RGB rendering (``None`` outside the main process, like every mmengine
        drawing call)."""
        classes = tuple(self.dataset_meta.get('classes') or ())
        colors = class_palette(self.dataset_meta)
        self.set_image(image)
        self.label_regions = []
        height, width = image.shape[:2]
        if self.auto_line_width:
            self.line_width = max(1.0, min(height, width) / 200.0)
        labels = (
            _to_numpy(instances.labels).astype(np.int64)
            if 'labels' in instances
            else np.zeros((0,), np.int64)
        )
        if len(labels) == 0:
            return self.get_image()
        extra = fixed_palette(int(labels.max()) + 1)
        inst_colors = [
            colors[lb] if 0 <= lb < len(colors) else extra[lb] for lb in labels
        ]

        masks = None
        if 'masks' in instances and len(instances.masks) > 0:
            masks = _masks_to_numpy(instances.masks)
            self.draw_binary_masks(
                masks, colors=inst_colors, alphas=self.mask_alpha
            )

        bboxes = None
        if 'bboxes' in instances:
            bboxes = _to_numpy(instances.bboxes).astype(np.float32)
            if bboxes.size == 0 or np.abs(bboxes).sum() == 0:
                bboxes = None  # e.g. SOLO fills in dummy boxes
        if bboxes is not None:
            with warnings.catch_warnings():
                # boxes touching the border are fine: matplotlib clips them
                warnings.filterwarnings('ignore', message='.*out of bounds')
                self.draw_bboxes(
                    bboxes,
                    edge_colors=inst_colors,
                    alpha=1.0,
                    line_widths=self.line_width,
                )

        scores = _to_numpy(instances.scores) if 'scores' in instances else None
        base_font = max(6.0, min(height, width) / 32.0) * self.font_scale
        for i, label in enumerate(labels):
            name = (
                classes[label]
                if 0 <= label < len(classes)
                else f'class {label}'
            )
            text = name if scores is None else f'{name} {float(scores[i]):.2f}'
            if bboxes is not None:
                x0, y0, x1, y1 = bboxes[i]
                pos = (
                    float(x0) + self.line_width,
                    float(y0) + self.line_width,
                )
                halign = 'left'
                size = min(base_font, max(6.0, (y1 - y0) / 3.0))
            elif masks is not None and masks[i].any():
                ys, xs = np.nonzero(masks[i])
                pos = (float(xs.mean()), float(ys.mean()))
                halign = 'center'
                size = base_font
            else:
                continue
            self.draw_texts(
                text,
                np.array(pos),
                colors=_text_color(inst_colors[i]),
                font_sizes=int(round(size)),
                vertical_alignments='top',
                horizontal_alignments=halign,
                bboxes=[
                    {
                        'facecolor': tuple(c / 255 for c in inst_colors[i]),
                        'alpha': 0.85,
                        'pad': 0.5,
                        'edgecolor': 'none',
                    }
                ],
            )
        drawn = self.get_image()
        if drawn is not None:
            self.label_regions = self._text_regions()
        return drawn

    def add_datasample(
        self,
        name: str,
        image: np.ndarray,
        data_sample=None,
        draw_gt: bool = True,
        draw_pred: bool = True,
        show: bool = False,
        wait_time: float = 0,
        out_file: Optional[str] = None,
        pred_score_thr: float = 0.3,
        step: int = 0,
    ) -> None:
        """mmdet's ``add_datasample`` (same arguments and outputs: the
        drawing is :meth:`get_image`, shown with ``show``, written to
        ``out_file`` or else sent to the ``vis_backends``), with three
        differences: the GT panel is there only when the sample has
        ``gt_instances`` (in the image's frame, see
        :func:`gt_in_image_frame`), 4 white pixels separate the GT and
        prediction panels, and ``out_file`` is written atomically.
        Predictions scoring ``<= pred_score_thr`` are not drawn."""
        pred_score_thr = check_score_thr(pred_score_thr)
        image = (
            np.ascontiguousarray(image[..., :3]).clip(0, 255).astype(np.uint8)
        )
        panels = []
        if data_sample is not None:
            data_sample = data_sample.cpu()
            if draw_gt and 'gt_instances' in data_sample:
                gt = gt_in_image_frame(data_sample, data_sample.gt_instances)
                panels.append(self.draw_instances(image, gt))
            if draw_pred and 'pred_instances' in data_sample:
                pred = data_sample.pred_instances
                if 'scores' in pred:
                    pred = pred[pred.scores > pred_score_thr]
                panels.append(self.draw_instances(image, pred))
            elif draw_pred:
                panels.append(image.copy())
        if not panels:
            panels.append(image.copy())
        if any(p is None for p in panels):  # not the main process
            return
        gap = np.full((image.shape[0], PANEL_GAP, 3), 255, np.uint8)
        drawn = panels[0]
        for panel in panels[1:]:
            drawn = np.concatenate([drawn, gap, panel], axis=1)
        self.set_image(drawn)
        if show:
            self.show(drawn, win_name=name, wait_time=wait_time)
        if out_file is not None:
            save_image(drawn, out_file)
        else:
            self.add_image(name, drawn, step)

    def _text_regions(self) -> List[Region]:
        """Pixel rectangles of the label patches on the current canvas."""
        renderer = self.fig_save_canvas.get_renderer()
        fig_height = self.fig_save.bbox.height
        regions = []
        for artist in self.ax_save.texts:
            patch = artist.get_bbox_patch()
            box = (patch or artist).get_window_extent(renderer)
            text_box = artist.get_window_extent(renderer)
            x0 = min(box.x0, text_box.x0)
            x1 = max(box.x1, text_box.x1)
            y0 = min(box.y0, text_box.y0)
            y1 = max(box.y1, text_box.y1)
            regions.append(
                (
                    int(math.floor(x0)) - 1,
                    int(math.floor(fig_height - y1)) - 1,
                    int(math.ceil(x1)) + 1,
                    int(math.ceil(fig_height - y0)) + 1,
                )
            )
        return regions


# ----------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------
def rescale_instances(instances, scale: float, shape: Tuple[int, int]):
    """A copy of ``instances`` with boxes times ``scale`` and masks resized
    (nearest) to ``shape`` = (H, W)."""
    out = instances.clone()
    if 'bboxes' in out:
        out.bboxes = torch.as_tensor(_to_numpy(out.bboxes) * scale)
    if 'masks' in out:
        masks = _masks_to_numpy(out.masks)
        if len(masks):
            masks = torch.from_numpy(masks[:, None].astype(np.float32))
            masks = (
                torch.nn.functional.interpolate(
                    masks, size=tuple(shape), mode='nearest'
                )[:, 0]
                > 0.5
            )
        else:
            masks = torch.zeros((0,) + tuple(shape), dtype=torch.bool)
        out.masks = masks
    return out


def gt_in_image_frame(data_sample, instances):
    """GT that went through ``Resize`` before ``LoadAnnotations`` is in the
    resized frame; bring it back to ``ori_shape`` (detected by the masks)."""
    meta = data_sample.metainfo
    if 'masks' not in instances or 'ori_shape' not in meta:
        return instances
    ori_shape = tuple(meta['ori_shape'][:2])
    masks = instances.masks
    mask_shape = (
        (masks.height, masks.width)
        if hasattr(masks, 'height')
        else tuple(_to_numpy(masks).shape[-2:])
    )
    if mask_shape == ori_shape or 'scale_factor' not in meta:
        return instances
    sx, sy = meta['scale_factor'][:2]
    out = rescale_instances(instances, 1.0, ori_shape)
    if 'bboxes' in out:
        boxes = _to_numpy(out.bboxes).copy()
        boxes[:, 0::2] /= sx
        boxes[:, 1::2] /= sy
        out.bboxes = torch.as_tensor(boxes)
    return out


def resize_sample(image: np.ndarray, data_sample, size: int):
    """``image`` scaled so that its longer side is ``size`` and a copy of
    ``data_sample`` with its predictions scaled alike (draw after scaling:
    text and lines stay crisp)."""
    height, width = image.shape[:2]
    if max(height, width) == size:
        return image, data_sample
    scale = size / max(height, width)
    shape = (
        max(1, int(round(height * scale))),
        max(1, int(round(width * scale))),
    )
    image = cv2.resize(
        image,
        (shape[1], shape[0]),
        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
    )
    sample = data_sample.clone()
    if 'pred_instances' in sample:
        sample.pred_instances = rescale_instances(
            sample.pred_instances.cpu(), scale, shape
        )
    if 'gt_instances' in sample:
        del sample.gt_instances
    return image, sample
