"""Deterministic synthetic COCO instance-segmentation dataset ("shapes").

Each image has a low-contrast textured background (smooth noise, gradient or
stripes) with 1-5 filled shapes of random size, position and colour painted
on top of each other, each left at least 60% visible by the shapes over it
(occlusion that splits or hides most of an object makes its box ill-posed);
each class draws its colour from its own hue family (shape and colour both
tell the class, so that a small Mask R-CNN trained from scratch on 2 CPU
cores learns it in minutes). Every instance is
annotated with its *visible* mask after occlusion.

The generator deliberately covers the general COCO case:

* non-contiguous category ids (see :data:`CATEGORIES`);
* polygon segmentations for fully visible instances (the exact polygon that
  was rasterised) and RLE for occluded ones, alternating compressed RLE
  (``counts`` is a ``str``) and uncompressed RLE (``counts`` is a list);
* about 5% of images without objects, about 10% of odd (non-square, not a
  multiple of 32) sizes, and a rare ``iscrowd=1`` region (uncompressed RLE).

Every random draw comes from a ``numpy.random.Generator`` seeded by
``(seed, split, image index)``, so the output is a pure function of the
arguments: the same seed yields byte-identical JSON and images.
"""

from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path
from typing import Any, List

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = ['CATEGORIES', 'CLASSES', 'make_shapes_dataset']

#: COCO categories; ids are non-contiguous on purpose.
CATEGORIES: list[dict[str, Any]] = [
    {'id': 1, 'name': 'circle', 'supercategory': 'shape'},
    {'id': 3, 'name': 'square', 'supercategory': 'shape'},
    {'id': 7, 'name': 'triangle', 'supercategory': 'shape'},
    {'id': 12, 'name': 'star', 'supercategory': 'shape'},
]
#: Class names in category-id order (e.g. for an MMDetection ``metainfo``).
CLASSES: tuple[str, ...] = tuple(c['name'] for c in CATEGORIES)

SPLITS: tuple[str, ...] = ('train', 'val')
MIN_VISIBLE_PX = 20  # instances with fewer visible pixels are dropped
#: In each annotation file's ``info``; bumped when the images change, so that
#: tools/quickstart.sh regenerates a data set of an older version.
GENERATOR_VERSION = '2.0'
MAX_OBJECTS = 5
MIN_VISIBLE_FRACTION = 0.6  # of an object's area left visible by occluders
PLACEMENT_TRIES = 20

Polygon = List[float]  # COCO polygon: [x0, y0, x1, y1, ...]


# ----------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------
def _shape_polygon(
    name: str, cx: float, cy: float, r: float, angle: float
) -> Polygon:
    """Vertices of a shape with circumradius ``r``, rounded to 0.01 px."""
    if name == 'circle':
        n, radii = 32, [r]
    elif name == 'square':
        n, radii = 4, [r]
    elif name == 'triangle':
        n, radii = 3, [r]
    elif name == 'star':
        n, radii = 10, [r, 0.45 * r]  # alternate outer / inner vertices
    else:
        raise ValueError(f'unknown shape {name!r}')
    poly: Polygon = []
    for k in range(n):
        a = angle + 2.0 * math.pi * k / n
        rk = radii[k % len(radii)]
        poly += [
            round(cx + rk * math.cos(a), 2),
            round(cy + rk * math.sin(a), 2),
        ]
    return poly


def _rasterise(polygons: list[Polygon], height: int, width: int) -> np.ndarray:
    """Boolean mask of polygons, rasterised exactly as ``COCO.annToMask``."""
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return mask_utils.decode(rle).astype(bool)


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major run lengths, starting with 0s)."""
    flat = mask.flatten(order='F').astype(np.int8)
    starts = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], starts, [flat.size]])).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {'size': [int(mask.shape[0]), int(mask.shape[1])], 'counts': counts}


def _compressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE with ``counts`` as a JSON-friendly ``str``."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        'size': [int(s) for s in rle['size']],
        'counts': rle['counts'].decode('ascii'),
    }


def _bbox(mask: np.ndarray) -> list[float]:
    """Tight COCO box ``[x, y, w, h]`` of a non-empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    return [
        float(xs[0]),
        float(ys[0]),
        float(xs[-1] - xs[0] + 1),
        float(ys[-1] - ys[0] + 1),
    ]


# ----------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------
def _background(
    rng: np.random.Generator, height: int, width: int
) -> np.ndarray:
    """Float RGB texture in [0, 255]: smooth noise, gradient or stripes,
    of low contrast (two colours at most 40 apart per channel) so that the
    shapes, not the texture, carry the strong edges."""
    c0 = rng.uniform(40.0, 215.0, size=3)
    c1 = np.clip(c0 + rng.uniform(-40.0, 40.0, size=3), 0.0, 255.0)
    kind = int(rng.integers(3))
    if kind == 0:  # smooth (bilinearly upsampled) noise
        gh, gw = (int(v) for v in rng.integers(2, 9, size=2))
        grid = rng.integers(0, 256, size=(gh, gw, 3), dtype=np.uint8)
        up = Image.fromarray(grid, 'RGB').resize(
            (width, height), Image.Resampling.BILINEAR
        )
        t = np.asarray(up, dtype=np.float32) / 255.0
    else:
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        theta = rng.uniform(0.0, math.pi)
        proj = xx * math.cos(theta) + yy * math.sin(theta)
        if kind == 1:  # linear gradient
            t = (proj - proj.min()) / max(float(np.ptp(proj)), 1.0)
        else:  # soft or hard stripes
            period = rng.uniform(6.0, 24.0)
            t = 0.5 + 0.5 * np.sin(
                2 * math.pi * proj / period + rng.uniform(0.0, 2 * math.pi)
            )
            if rng.random() < 0.5:
                t = (t > 0.5).astype(np.float32)
        t = t[..., None]
    return c0 * (1.0 - t) + c1 * t


def _class_colour(
    rng: np.random.Generator, category_id: int, ref: np.ndarray
) -> np.ndarray:
    """Random RGB colour of the class's hue family (hue +-25 degrees, random
    saturation and value), preferably far (L1 > 120) from ``ref``."""
    index = [c['id'] for c in CATEGORIES].index(category_id)
    base_hue = index / len(CATEGORIES)
    for _ in range(10):
        hue = (base_hue + rng.uniform(-25.0, 25.0) / 360.0) % 1.0
        rgb = (
            np.array(
                colorsys.hsv_to_rgb(
                    hue, rng.uniform(0.5, 1.0), rng.uniform(0.45, 1.0)
                )
            )
            * 255.0
        )
        if np.abs(rgb - ref).sum() > 120.0:
            break
    return rgb


def _crowd_polygons(
    rng: np.random.Generator, name: str, height: int, width: int
) -> list[Polygon]:
    """A cluster of many small shapes of one class (a COCO crowd region)."""
    spread = 0.15 * min(height, width)
    cx = rng.uniform(spread + 6, width - 1 - spread - 6)
    cy = rng.uniform(spread + 6, height - 1 - spread - 6)
    polys = []
    for _ in range(int(rng.integers(6, 11))):
        polys.append(
            _shape_polygon(
                name,
                cx + rng.uniform(-spread, spread),
                cy + rng.uniform(-spread, spread),
                rng.uniform(3.0, 5.0),
                rng.uniform(0.0, 2 * math.pi),
            )
        )
    return polys


def _render(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_objects: int,
    crowd: bool,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Render one image; return it and its instance layers.

    Each layer is a dict with ``category_id``, ``iscrowd``, ``polygons`` and
    the full (unoccluded) boolean ``mask``; layers are ordered bottom to top.
    """
    img = _background(rng, height, width)
    layers: list[dict[str, Any]] = []
    if crowd:
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        layers.append(
            {
                'category_id': cat['id'],
                'iscrowd': 1,
                'polygons': _crowd_polygons(rng, cat['name'], height, width),
            }
        )
    short = min(height, width)
    for layer in layers:
        layer['mask'] = _rasterise(layer['polygons'], height, width)
    # Objects are placed bottom to top; a placement that would leave an
    # object below it less than MIN_VISIBLE_FRACTION visible is redrawn (up
    # to PLACEMENT_TRIES times, then the object is left out).
    # (visible mask, full mask) of the objects placed so far
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(num_objects):
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        for _ in range(PLACEMENT_TRIES):
            r = rng.uniform(0.1, 0.25) * short  # diameter 1/5..1/2 of image
            cx = rng.uniform(r + 1, width - 2 - r)
            cy = rng.uniform(r + 1, height - 2 - r)
            poly = _shape_polygon(
                cat['name'], cx, cy, r, rng.uniform(0.0, 2 * math.pi)
            )
            mask = _rasterise([poly], height, width)
            if all(
                (vis & ~mask).sum() >= MIN_VISIBLE_FRACTION * full.sum()
                for vis, full in placed
            ):
                break
        else:
            continue
        placed = [(vis & ~mask, full) for vis, full in placed] + [(mask, mask)]
        layers.append(
            {
                'category_id': cat['id'],
                'iscrowd': 0,
                'polygons': [poly],
                'mask': mask,
            }
        )
    for layer in layers:  # paint bottom to top
        mask = layer['mask']
        if mask.any():
            ref = img[mask].mean(axis=0)
            img[mask] = _class_colour(rng, layer['category_id'], ref)
    sigma = rng.uniform(0.0, 10.0)  # pixel noise over everything
    img += sigma * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), layers


def _annotate(
    layers: list[dict[str, Any]], image_id: int, first_ann_id: int
) -> list[dict[str, Any]]:
    """COCO annotations (bottom to top) for the visible part of each layer."""
    visible: list[np.ndarray] = [np.empty(0)] * len(layers)
    covered: np.ndarray | None = None
    for i in reversed(range(len(layers))):  # top layer is fully visible
        full = layers[i]['mask']
        visible[i] = full if covered is None else full & ~covered
        covered = full.copy() if covered is None else covered | full
    anns: list[dict[str, Any]] = []
    for layer, vis in zip(layers, visible):
        area = int(vis.sum())
        if area < MIN_VISIBLE_PX:
            continue
        ann_id = first_ann_id + len(anns)
        if layer['iscrowd']:
            segm: Any = _uncompressed_rle(vis)
        elif area == int(layer['mask'].sum()):  # fully visible: its polygon
            segm = layer['polygons']
        elif ann_id % 2:
            segm = _compressed_rle(vis)
        else:
            segm = _uncompressed_rle(vis)
        anns.append(
            {
                'id': ann_id,
                'image_id': image_id,
                'category_id': layer['category_id'],
                'segmentation': segm,
                'area': float(area),
                'bbox': _bbox(vis),
                'iscrowd': layer['iscrowd'],
            }
        )
    return anns


# ----------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------
def _image_size(
    rng: np.random.Generator, index: int, size: int
) -> tuple[int, int]:
    """(width, height): ``size`` square, but every 10th image is odd-sized."""
    if index % 10 != 5:
        return size, size
    w, h = (
        int(v)
        for v in rng.integers(int(0.7 * size), int(1.2 * size) + 1, size=2)
    )
    while w % 32 == 0:
        w += 1
    while h % 32 == 0 or h == w:  # odd and never square
        h += 1
    return w, h


def _make_split(
    out_dir: Path, split: str, num_images: int, seed: int, size: int
) -> dict[str, Any]:
    """Write ``out_dir/split/*.png`` and its annotation file."""
    img_dir = out_dir / split
    ann_dir = out_dir / 'annotations'
    img_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    split_key = SPLITS.index(split)
    for index in range(num_images):
        rng = np.random.default_rng([seed, split_key, index])
        width, height = _image_size(rng, index, size)
        empty = index % 20 == 3  # ~5% of images without objects
        crowd = index % 50 == 17  # rare crowd region
        num_objects = 0 if empty else int(rng.integers(1, MAX_OBJECTS + 1))
        pixels, layers = _render(
            rng, height, width, num_objects, crowd and not empty
        )
        image_id = index + 1
        file_name = f'{index:06d}.png'
        Image.fromarray(pixels, 'RGB').save(
            img_dir / file_name, compress_level=1
        )
        images.append(
            {
                'id': image_id,
                'file_name': file_name,
                'width': width,
                'height': height,
            }
        )
        annotations += _annotate(layers, image_id, len(annotations) + 1)
    coco = {
        'info': {
            'description': f'synthetic shapes ({split}, seed {seed})',
            'version': GENERATOR_VERSION,
        },
        'licenses': [],
        'images': images,
        'annotations': annotations,
        'categories': CATEGORIES,
    }
    ann_file = ann_dir / f'instances_{split}.json'
    ann_file.write_text(json.dumps(coco, separators=(',', ':')))
    return {
        'img_dir': str(img_dir),
        'ann_file': str(ann_file),
        'num_images': len(images),
        'num_annotations': len(annotations),
    }


def make_shapes_dataset(
    out_dir: str | Path,
    num_train: int = 400,
    num_val: int = 100,
    seed: int = 0,
    size: int = 128,
) -> dict[str, Any]:
    """Generate the shapes dataset under ``out_dir``.

    Layout: ``train/*.png``, ``val/*.png`` and
    ``annotations/instances_{train,val}.json``. Existing files with the same
    names are overwritten. ``size`` is the side of the (mostly square) images
    and must be at least 48.

    Returns:
        ``{"root": str, "train": {...}, "val": {...}}`` where each split entry
        has ``img_dir``, ``ann_file``, ``num_images`` and ``num_annotations``.
    """
    if size < 48:
        raise ValueError(f'size must be >= 48, got {size}')
    if seed < 0 or num_train < 0 or num_val < 0:
        raise ValueError('seed and image counts must be non-negative')
    out = Path(out_dir)
    result: dict[str, Any] = {'root': str(out)}
    for split, n in zip(SPLITS, (num_train, num_val)):
        result[split] = _make_split(out, split, n, seed, size)
    return result
