"""Draw detections (boxes, translucent masks, class names and scores) with
stable per-class colours, and put renderings side by side or into a grid.

mmdet's :class:`~mmdet.visualization.DetLocalVisualizer` jitters every mask
colour with the global numpy RNG, so the same class gets a different colour in
every image and every run. :class:`StableColorDetVisualizer` keeps
mmdet's machinery (``add_datasample``, GT | prediction panels, the matplotlib
canvas, the ``VISUALIZERS`` registry) and only replaces the instance drawing:
the colour of a class is a pure function of the dataset's metainfo (see
:func:`class_palette`), whatever else is in the image.

The main entry points:

* :func:`load_detector` / :func:`predict`: a model from a config and a
  checkpoint (weights-only loading, refusing checkpoints that do not fit);
* :class:`DetRenderer` / :func:`render_sample`: one image with its
  predictions (and optionally its ground truth side by side);
* :func:`render_data_samples`: what ``tools/test.py --show-dir`` calls for the
  data samples of the test loop (also wrapped as ``RenderPredictionsHook`` in
  :mod:`eca_mmdet.hooks`);
* :func:`make_grid` / :func:`write_contact_sheet`: grids of renderings.
"""
import colorsys
import math
import os.path as osp
import warnings
from typing import (Dict, List, Optional, Sequence, Tuple, Union)

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mmdet.registry import VISUALIZERS
from mmdet.visualization import DetLocalVisualizer

from ..engine.checkpoint import (CheckpointMismatchError, checkpoint_mismatch,
                                safe_torch_load, state_dict_of)
from ..engine.atomic_io import atomic_writer
from ..engine.errors import EcaMmdetError

__all__ = [
    'IMG_EXTENSIONS', 'VisualizationError', 'CheckpointMismatchError',
    'StableColorDetVisualizer', 'DetRenderer', 'class_palette',
    'fixed_palette', 'load_detector', 'load_weights', 'checkpoint_mismatch',
    'predict', 'read_image', 'render_sample', 'render_data_samples',
    'make_grid', 'write_contact_sheet', 'save_image', 'get_font',
    'rescale_instances', 'build_detector', 'load_config', 'check_score_thr',
    'rendering_name', 'CONTACT_SHEET'
]

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif',
                  '.tiff', '.webp')
Color = Tuple[int, int, int]
Region = Tuple[int, int, int, int]  # x0, y0, x1, y1 (inclusive) in pixels


class VisualizationError(EcaMmdetError):
    """Bad input for the rendering tools (image, checkpoint, config)."""


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
        colors.append((int(round(r * 255)), int(round(g * 255)),
                       int(round(b * 255))))
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
        from mmdet.visualization.palette import get_palette
        return [tuple(int(v) for v in c) for c in get_palette(palette, num)]
    palette = [tuple(int(v) for v in c) for c in palette]
    coco_classes, coco_palette = _coco_metainfo()
    inherited = (len(palette) >= len(coco_palette)
                 and palette[:len(coco_palette)] == coco_palette
                 and classes != coco_classes[:len(classes)])
    if inherited:
        if classes and all(c in coco_classes for c in classes):
            return [coco_palette[coco_classes.index(c)] for c in classes]
        return fixed_palette(num)
    if len(palette) < num:
        palette = palette + fixed_palette(num)[len(palette):]
    return palette


def _text_color(color: Color) -> Color:
    """Black or white, whichever reads better on ``color``."""
    r, g, b = color
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else \
        (255, 255, 255)


# ----------------------------------------------------------------------------
# The visualizer
# ----------------------------------------------------------------------------
def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _masks_to_numpy(masks) -> np.ndarray:
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
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

    def __init__(self,
                 name: str = 'eca_visualizer',
                 mask_alpha: float = 0.5,
                 line_width: Optional[float] = None,
                 font_scale: float = 1.0,
                 **kwargs) -> None:
        kwargs.setdefault('alpha', 1.0)
        super().__init__(name=name, line_width=line_width or 1, **kwargs)
        self.auto_line_width = line_width is None
        self.mask_alpha = mask_alpha
        self.font_scale = font_scale
        self.label_regions: List[Region] = []

    # DetLocalVisualizer.add_datasample calls this for GT and predictions.
    def _draw_instances(self, image: np.ndarray, instances,
                        classes: Optional[Sequence[str]],
                        palette=None) -> np.ndarray:
        return self.draw_instances(image, instances)

    def draw_instances(self, image: np.ndarray, instances) -> np.ndarray:
        """Draw ``instances`` (an ``InstanceData`` with ``labels`` and any of
        ``bboxes``, ``masks``, ``scores``) on the RGB ``image``; returns the
        RGB rendering (``None`` outside the main process, like every mmengine
        drawing call)."""
        classes = tuple(self.dataset_meta.get('classes') or ())
        colors = class_palette(self.dataset_meta)
        self.set_image(image)
        self.label_regions = []
        height, width = image.shape[:2]
        if self.auto_line_width:
            self.line_width = max(1.0, min(height, width) / 200.0)
        labels = _to_numpy(instances.labels).astype(np.int64) \
            if 'labels' in instances else np.zeros((0, ), np.int64)
        if len(labels) == 0:
            return self.get_image()
        extra = fixed_palette(int(labels.max()) + 1)
        inst_colors = [colors[lb] if 0 <= lb < len(colors) else extra[lb]
                       for lb in labels]

        masks = None
        if 'masks' in instances and len(instances.masks) > 0:
            masks = _masks_to_numpy(instances.masks)
            self.draw_binary_masks(
                masks, colors=inst_colors, alphas=self.mask_alpha)

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
                    line_widths=self.line_width)

        scores = _to_numpy(instances.scores) if 'scores' in instances \
            else None
        base_font = max(6.0, min(height, width) / 32.0) * self.font_scale
        for i, label in enumerate(labels):
            name = classes[label] if 0 <= label < len(classes) \
                else f'class {label}'
            text = name if scores is None else f'{name} {float(scores[i]):.2f}'
            if bboxes is not None:
                x0, y0, x1, y1 = bboxes[i]
                pos = (float(x0) + self.line_width,
                       float(y0) + self.line_width)
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
                bboxes=[{
                    'facecolor': tuple(c / 255 for c in inst_colors[i]),
                    'alpha': 0.85,
                    'pad': 0.5,
                    'edgecolor': 'none'
                }])
        drawn = self.get_image()
        if drawn is not None:
            self.label_regions = self._text_regions()
        return drawn

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
            regions.append((int(math.floor(x0)) - 1,
                            int(math.floor(fig_height - y1)) - 1,
                            int(math.ceil(x1)) + 1,
                            int(math.ceil(fig_height - y0)) + 1))
        return regions


# ----------------------------------------------------------------------------
# Rendering data samples
# ----------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); :class:`VisualizationError`
    naming the file if it cannot be read."""
    import mmcv
    if not osp.isfile(path):
        raise VisualizationError(f'image not found: {path}')
    try:
        img = mmcv.imread(path, flag='color', channel_order='bgr')
    except Exception as e:  # noqa: BLE001 - any decoder error
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise VisualizationError(
            f'cannot read image {path}: {type(e).__name__}: {first}'
        ) from None
    if img is None or img.size == 0:
        raise VisualizationError(f'cannot read image {path}: not an image '
                                 'file, or corrupt')
    return np.ascontiguousarray(img[..., 2::-1])


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
            masks = torch.nn.functional.interpolate(
                masks, size=tuple(shape), mode='nearest')[:, 0] > 0.5
        else:
            masks = torch.zeros((0, ) + tuple(shape), dtype=torch.bool)
        out.masks = masks
    return out


def _gt_in_original_frame(data_sample, instances):
    """GT that went through ``Resize`` before ``LoadAnnotations`` is in the
    resized frame; bring it back to ``ori_shape`` (detected by the masks)."""
    meta = data_sample.metainfo
    if 'masks' not in instances or 'ori_shape' not in meta:
        return instances
    ori_shape = tuple(meta['ori_shape'][:2])
    masks = instances.masks
    mask_shape = (masks.height, masks.width) if hasattr(masks, 'height') \
        else tuple(_to_numpy(masks).shape[-2:])
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


def check_score_thr(value: float, option: str = 'score_thr') -> float:
    """``value`` as a float if it is a score threshold in [0, 1] (scores
    are probabilities), else :class:`VisualizationError` naming ``option``."""
    try:
        thr = float(value)
    except (TypeError, ValueError):
        thr = float('nan')
    if not 0.0 <= thr <= 1.0:  # also refuses NaN
        raise VisualizationError(
            f'{option} must be a score in [0, 1], got {value!r}')
    return thr


class DetRenderer:
    """Renders images with predictions (and GT) in stable class colours.

    Args:
        dataset_meta (dict): ``classes`` and optionally ``palette``.
        score_thr (float): predictions scoring ``<= score_thr`` are not drawn
            (mmdet's convention).
        mask_alpha (float): opacity of the mask fill.
        line_width (float, optional): box line width; from the image size if
            None.
    """

    def __init__(self,
                 dataset_meta: Optional[dict],
                 score_thr: float = 0.3,
                 mask_alpha: float = 0.5,
                 line_width: Optional[float] = None) -> None:
        self.dataset_meta = dict(dataset_meta or {})
        self.score_thr = check_score_thr(score_thr)
        self.visualizer = StableColorDetVisualizer(
            name=f'eca_renderer_{id(self)}',
            mask_alpha=mask_alpha,
            line_width=line_width)
        self.visualizer.dataset_meta = self.dataset_meta

    @property
    def palette(self) -> List[Color]:
        return class_palette(self.dataset_meta)

    @property
    def label_regions(self) -> List[Region]:
        """Label rectangles of the last :meth:`draw` call."""
        return list(self.visualizer.label_regions)

    def draw(self, image: np.ndarray, instances) -> np.ndarray:
        """Draw all ``instances`` (no score filtering) on ``image``."""
        return self.visualizer.draw_instances(image, instances)

    def filter(self, pred_instances):
        if 'scores' not in pred_instances:
            return pred_instances
        return pred_instances[pred_instances.scores > self.score_thr]

    def render(self,
               image: np.ndarray,
               data_sample,
               draw_gt: bool = False,
               draw_pred: bool = True,
               size: Optional[int] = None,
               separator: int = 4) -> np.ndarray:
        """Render ``data_sample`` (a ``DetDataSample`` with
        ``pred_instances`` in the frame of ``image``) on ``image``.

        With ``draw_gt`` and ``gt_instances`` present, the GT panel is on the
        left and the prediction panel on the right, ``separator`` white
        pixels apart. ``size`` scales the image so that its longer side is
        ``size`` before drawing (text and lines stay crisp).
        """
        image = np.ascontiguousarray(image[..., :3]).clip(0, 255).astype(
            np.uint8)
        height, width = image.shape[:2]
        scale = 1.0
        if size is not None and max(height, width) != size:
            scale = size / max(height, width)
            new_shape = (max(1, int(round(height * scale))),
                         max(1, int(round(width * scale))))
            image = cv2.resize(
                image, (new_shape[1], new_shape[0]),
                interpolation=cv2.INTER_AREA if scale < 1 else
                cv2.INTER_LINEAR)

        def prepare(instances):
            if scale != 1.0:
                instances = rescale_instances(instances, scale,
                                              image.shape[:2])
            return instances

        panels = []
        if draw_gt and data_sample is not None and \
                'gt_instances' in data_sample:
            gt = _gt_in_original_frame(data_sample,
                                       data_sample.gt_instances.cpu())
            panels.append(self.draw(image, prepare(gt)))
        if draw_pred:
            if data_sample is not None and 'pred_instances' in data_sample:
                pred = self.filter(data_sample.pred_instances.cpu())
                panels.append(self.draw(image, prepare(pred)))
            else:
                panels.append(image.copy())
        if any(p is None for p in panels):  # not the main process
            return None
        if len(panels) == 1:
            return panels[0]
        gap = np.full((image.shape[0], separator, 3), 255, np.uint8)
        out = [panels[0]]
        for panel in panels[1:]:
            out += [gap, panel]
        return np.concatenate(out, axis=1)


def render_sample(image: np.ndarray,
                  data_sample,
                  dataset_meta: Optional[dict],
                  score_thr: float = 0.3,
                  draw_gt: bool = False,
                  size: Optional[int] = None) -> np.ndarray:
    """One-shot :meth:`DetRenderer.render`."""
    return DetRenderer(dataset_meta, score_thr).render(
        image, data_sample, draw_gt=draw_gt, size=size)


def save_image(image: Union[np.ndarray, Image.Image], path: str) -> str:
    """Write an RGB image atomically (see
    :func:`eca_mmdet.engine.atomic_io.atomic_writer`); the format follows
    the extension (PNG if unknown)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    ext = osp.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext, 'PNG')
    with atomic_writer(path) as f:
        image.save(f, format=fmt)
    return path


CONTACT_SHEET = 'contact_sheet'


def rendering_name(img_path: str, used: set,
                   img_id: Optional[object] = None) -> str:
    """A file stem for the rendering of ``img_path`` that no earlier
    rendering in ``used`` has (compared case-insensitively) and that is not
    the contact sheet's: the image's own stem, else ``<stem>_id<img_id>``,
    else ``<stem>_<n>``. The stem is added to ``used``."""
    stem = osp.splitext(osp.basename(img_path))[0]

    def taken(name: str) -> bool:
        return name.lower() in used or name.lower() == CONTACT_SHEET

    name = stem
    if taken(name) and img_id is not None:
        name = f'{stem}_id{img_id}'
    base, n = name, 1
    while taken(name):
        name, n = f'{base}_{n}', n + 1
    used.add(name.lower())
    return name


def render_data_samples(data_samples: Sequence,
                        dataset_meta: Optional[dict],
                        out_dir: str,
                        score_thr: float = 0.3,
                        draw_gt: bool = True,
                        renderer: Optional[DetRenderer] = None,
                        used_names: Optional[set] = None) -> List[str]:
    """Render test-loop outputs into ``out_dir``: one PNG per data sample,
    GT | prediction side by side when the sample carries ``gt_instances``
    and ``draw_gt``.

    A rendering is named after its image (``<stem>.png``); an image whose
    name is taken by an earlier one (same file name in another folder) or
    by the contact sheet gets ``<stem>_id<img_id>.png`` (see
    :func:`rendering_name`). Pass the same ``used_names`` set to every call
    of one run so names stay unique across batches.

    This is what ``tools/test.py --show-dir DIR`` calls from
    ``after_test_iter`` (see ``RenderPredictionsHook``); call
    :func:`write_contact_sheet` on the returned paths at the end. Returns the
    written paths (empty outside the main process: mmengine only draws on
    rank 0).
    """
    from mmengine.dist import is_main_process
    if not is_main_process():
        return []
    renderer = renderer or DetRenderer(dataset_meta, score_thr)
    used = set() if used_names is None else used_names
    written = []
    for sample in data_samples:
        img_path = sample.metainfo.get('img_path')
        if img_path is None:
            raise VisualizationError('data sample without img_path: cannot '
                                     'load the image to draw on')
        image = read_image(img_path)
        drawn = renderer.render(image, sample, draw_gt=draw_gt)
        name = rendering_name(img_path, used, sample.metainfo.get('img_id'))
        written.append(save_image(drawn, osp.join(out_dir, f'{name}.png')))
    return written


# ----------------------------------------------------------------------------
# Grids
# ----------------------------------------------------------------------------
def get_font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font (bitmap default if no FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit(image: Image.Image, box: Tuple[int, int],
         background: Color) -> Image.Image:
    """Scale ``image`` to fit ``box`` = (w, h), centred, padded."""
    w, h = image.size
    scale = min(box[0] / w, box[1] / h)
    new = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if new != (w, h):
        image = image.resize(new, Image.LANCZOS if scale < 1 else
                             Image.BILINEAR)
    cell = Image.new('RGB', box, background)
    cell.paste(image, ((box[0] - new[0]) // 2, (box[1] - new[1]) // 2))
    return cell


def make_grid(images: Sequence[Union[np.ndarray, Image.Image, str]],
              captions: Optional[Sequence[str]] = None,
              cols: Optional[int] = None,
              cell: Optional[Tuple[int, int]] = None,
              pad: int = 4,
              background: Color = (255, 255, 255),
              font_size: int = 12) -> Image.Image:
    """Put ``images`` (arrays, PIL images or paths) in a grid.

    Each image is scaled to fit its ``cell`` (w, h) (default: the largest
    image) and centred; ``captions`` go under the cells. ``cols`` defaults to
    ``ceil(sqrt(n))``. The layout depends only on the number of images,
    ``cols`` and ``cell``, so frames of a GIF built with the same arguments
    line up.
    """
    pil = []
    for im in images:
        if isinstance(im, str):
            im = Image.open(im)
        elif isinstance(im, np.ndarray):
            im = Image.fromarray(im)
        pil.append(im.convert('RGB'))
    if not pil:
        raise VisualizationError('no images to put in a grid')
    n = len(pil)
    cols = max(1, min(cols or math.ceil(math.sqrt(n)), n))
    rows = math.ceil(n / cols)
    if cell is None:
        cell = (max(im.size[0] for im in pil), max(im.size[1] for im in pil))
    font = get_font(font_size) if captions else None
    cap_h = font_size + 6 if captions else 0
    width = cols * cell[0] + (cols + 1) * pad
    height = rows * (cell[1] + cap_h) + (rows + 1) * pad
    sheet = Image.new('RGB', (width, height), background)
    draw = ImageDraw.Draw(sheet)
    for i, im in enumerate(pil):
        r, c = divmod(i, cols)
        x = pad + c * (cell[0] + pad)
        y = pad + r * (cell[1] + cap_h + pad)
        sheet.paste(_fit(im, cell, background), (x, y))
        if captions:
            text = str(captions[i])
            while len(text) > 4 and draw.textlength(text, font=font) > \
                    cell[0]:
                text = text[:-4] + '...'
            draw.text((x, y + cell[1] + 2), text, fill=(0, 0, 0), font=font)
    return sheet


def write_contact_sheet(images: Sequence[Union[str, np.ndarray]],
                        out_file: str,
                        captions: Optional[Sequence[str]] = None,
                        cell_size: int = 256,
                        max_width: int = 4096) -> str:
    """A grid of ``images`` (paths or arrays) as one PNG at ``out_file``.

    Cells are ``cell_size`` high and as wide as the widest aspect ratio
    needs (GT | prediction pairs get wide cells); cells shrink so the sheet
    stays within about ``max_width`` pixels. Captions default to the file
    names.
    """
    if not len(images):
        raise VisualizationError('no renderings for the contact sheet')
    if captions is None:
        captions = [osp.basename(p) if isinstance(p, str) else str(i)
                    for i, p in enumerate(images)]
    sizes = []
    for im in images:
        if isinstance(im, str):
            with Image.open(im) as f:
                sizes.append(f.size)
        else:
            sizes.append((im.shape[1], im.shape[0]))
    aspect = min(4.0, max(w / h for w, h in sizes))
    n = len(images)
    cols = math.ceil(math.sqrt(n / aspect))
    cols = max(1, min(cols, n))
    cell_h = cell_size
    cell_w = int(round(cell_h * aspect))
    if cols * cell_w > max_width:
        cell_w = max(32, max_width // cols)
        cell_h = max(16, int(round(cell_w / aspect)))
    sheet = make_grid(images, captions=captions, cols=cols,
                      cell=(cell_w, cell_h))
    return save_image(sheet, out_file)


# ----------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------
def load_weights(model: torch.nn.Module, checkpoint: str) -> dict:
    """Load ``checkpoint`` (weights-only with our allow-list, whether or not
    the stack fixes are on) into ``model``, refusing one that does not fit.
    Returns the checkpoint dict."""
    if not osp.isfile(checkpoint):
        raise VisualizationError(f'checkpoint not found: {checkpoint}')
    ckpt = safe_torch_load(checkpoint, map_location='cpu')
    state = state_dict_of(ckpt)
    problem = checkpoint_mismatch(model, state)
    if problem:
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} does not fit the config\'s model: '
            f'{problem}')
    model.load_state_dict(state, strict=True)
    return ckpt


def _config_dataset_meta(cfg) -> dict:
    from mmdet.registry import DATASETS
    for key in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        loader = cfg.get(key)
        if not loader or 'dataset' not in loader:
            continue
        ds_cfg = loader['dataset'].copy()
        ds_cfg['lazy_init'] = True
        try:
            return dict(DATASETS.build(ds_cfg).metainfo)
        except Exception:  # noqa: BLE001 - wrappers without lazy_init
            continue
    return {}


def load_config(config, cfg_options: Optional[dict] = None):
    """``Config.fromfile`` (or a Config) with ``cfg_options`` merged and the
    backbone's pretrained ``init_cfg`` dropped (weights come from the
    checkpoint)."""
    from mmengine.config import Config
    if isinstance(config, Config):
        cfg = config.copy()
    else:
        if not osp.isfile(str(config)):
            raise VisualizationError(f'config file not found: {config}')
        try:
            cfg = Config.fromfile(str(config))
        except Exception as e:  # noqa: BLE001
            raise VisualizationError(
                f'cannot load config {config}: {type(e).__name__}: '
                f'{str(e).strip().splitlines()[0] if str(e).strip() else ""}'
            ) from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    backbone = cfg.model.get('backbone')
    if backbone is not None and 'init_cfg' in backbone:
        backbone.init_cfg = None
    return cfg


def build_detector(config, device: str = 'cpu',
                   cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """The detector of ``config`` (random weights), in eval mode, with
    ``model.cfg`` and ``model.dataset_meta`` (from the config's dataset)."""
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.cfg = cfg
    model.dataset_meta = _config_dataset_meta(cfg)
    return model.to(device).eval()


def load_detector(config,
                  checkpoint: Optional[str],
                  device: str = 'cpu',
                  cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Like mmdet's ``init_detector``, but weights-only loading, strict
    (:class:`CheckpointMismatchError` names the first mismatched keys) and
    one-line errors. ``model.dataset_meta`` comes from the checkpoint's meta
    when present, else from the config's dataset."""
    model = build_detector(config, device='cpu', cfg_options=cfg_options)
    if checkpoint is not None:
        ckpt = load_weights(model, checkpoint)
        meta = (ckpt.get('meta') or {}).get('dataset_meta')
        if meta:
            model.dataset_meta = {k.lower(): v for k, v in meta.items()}
    return model.to(device).eval()


def predict(model: torch.nn.Module, images: Sequence[Union[str, np.ndarray]]
            ) -> List:
    """Run ``model`` (from :func:`load_detector`) on image paths or RGB
    arrays; one ``DetDataSample`` per image, in the image's own frame."""
    from mmdet.apis import inference_detector
    arrays = [img[..., ::-1].copy() if isinstance(img, np.ndarray) else img
              for img in images]  # mmdet's ndarray loader expects BGR
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            results = inference_detector(model, list(arrays))
    finally:
        model.train(was_training)
    return results
