"""Image files for the rendering tools: reading, atomic writing,
collision-free rendering names, and grids of renderings (contact sheets,
GIF frames).

Drawing itself is :class:`~eca_mmdet.visualization.StableColorDetVisualizer`
(mmdet's ``DetLocalVisualizer`` with stable class colours).
"""

import math
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..engine.atomic_io import atomic_writer
from ..engine.errors import EcaMmdetError, first_line

__all__ = [
    'IMG_EXTENSIONS',
    'VisualizationError',
    'CONTACT_SHEET',
    'check_score_thr',
    'get_font',
    'make_grid',
    'read_image',
    'rendering_name',
    'save_image',
    'write_contact_sheet',
]

IMG_EXTENSIONS = (
    '.jpg',
    '.jpeg',
    '.png',
    '.ppm',
    '.bmp',
    '.pgm',
    '.tif',
    '.tiff',
    '.webp',
)
Color = Tuple[int, int, int]


class VisualizationError(EcaMmdetError):
    """Bad input for the rendering tools (image, checkpoint, config)."""


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); :class:`VisualizationError`
    naming the file if it cannot be read."""
    if not osp.isfile(path):
        raise VisualizationError(f'image not found: {path}')
    try:
        img = mmcv.imread(path, flag='color', channel_order='bgr')
    except Exception as e:  # noqa: BLE001 - any decoder error
        raise VisualizationError(
            f'cannot read image {path}: {type(e).__name__}: '
            f'{first_line(e) if str(e).strip() else ""}'
        ) from None
    if img is None or img.size == 0:
        raise VisualizationError(
            f'cannot read image {path}: not an image file, or corrupt'
        )
    return np.ascontiguousarray(img[..., 2::-1])


def check_score_thr(value: float, option: str = 'score_thr') -> float:
    """``value`` as a float if it is a score threshold in [0, 1] (scores
    are probabilities), else :class:`VisualizationError` naming ``option``."""
    try:
        thr = float(value)
    except (TypeError, ValueError):
        thr = float('nan')
    if not 0.0 <= thr <= 1.0:  # also refuses NaN
        raise VisualizationError(
            f'{option} must be a score in [0, 1], got {value!r}'
        )
    return thr


def save_image(image: Union[np.ndarray, Image.Image], path: str) -> str:
    """Write an RGB image atomically (see
    :func:`eca_mmdet.engine.atomic_io.atomic_writer`); the format follows
    the extension (PNG if unknown)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    ext = osp.splitext(path)[1].lower()
    fmt = Image.registered_extensions().get(ext, 'PNG')
    options = dict(quality=95) if fmt == 'JPEG' else {}  # as cv2/mmcv
    with atomic_writer(path) as f:
        image.save(f, format=fmt, **options)
    return path


CONTACT_SHEET = 'contact_sheet'


def rendering_name(
    img_path: str, used: set, img_id: Optional[object] = None
) -> str:
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


# ----------------------------------------------------------------------------
# Grids
# ----------------------------------------------------------------------------
def get_font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font (bitmap default if no FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _fit(
    image: Image.Image, box: Tuple[int, int], background: Color
) -> Image.Image:
    """Scale ``image`` to fit ``box`` = (w, h), centred, padded."""
    w, h = image.size
    scale = min(box[0] / w, box[1] / h)
    new = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    if new != (w, h):
        image = image.resize(
            new, Image.LANCZOS if scale < 1 else Image.BILINEAR
        )
    cell = Image.new('RGB', box, background)
    cell.paste(image, ((box[0] - new[0]) // 2, (box[1] - new[1]) // 2))
    return cell


def make_grid(
    images: Sequence[Union[np.ndarray, Image.Image, str]],
    captions: Optional[Sequence[str]] = None,
    cols: Optional[int] = None,
    cell: Optional[Tuple[int, int]] = None,
    pad: int = 4,
    background: Color = (255, 255, 255),
    font_size: int = 12,
) -> Image.Image:
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
            while len(text) > 4 and draw.textlength(text, font=font) > cell[0]:
                text = text[:-4] + '...'
            draw.text((x, y + cell[1] + 2), text, fill=(0, 0, 0), font=font)
    return sheet


def write_contact_sheet(
    images: Sequence[Union[str, np.ndarray]],
    out_file: str,
    captions: Optional[Sequence[str]] = None,
    cell_size: int = 256,
    max_width: int = 4096,
) -> str:
    """A grid of ``images`` (paths or arrays) as one PNG at ``out_file``.

    Cells are ``cell_size`` high and as wide as the widest aspect ratio
    needs (GT | prediction pairs get wide cells); cells shrink so the sheet
    stays within about ``max_width`` pixels. Captions default to the file
    names.
    """
    if not len(images):
        raise VisualizationError('no renderings for the contact sheet')
    if captions is None:
        captions = [
            osp.basename(p) if isinstance(p, str) else str(i)
            for i, p in enumerate(images)
        ]
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
    sheet = make_grid(
        images, captions=captions, cols=cols, cell=(cell_w, cell_h)
    )
    return save_image(sheet, out_file)
