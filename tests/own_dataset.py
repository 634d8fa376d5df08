"""A small COCO-format data set unlike the shapes set, as a user would bring
their own: rings and crosses of random colours on textured backgrounds, in
images of odd, varied sizes; category ids 42 ('cross') and 11 ('ring'),
listed in that order; rings as compressed RLE, crosses as polygons; one
empty image per split and one crowd region (uncompressed RLE) in val.

Drawn with Pillow and encoded with pycocotools, independently of the
package.
"""

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

CLASSES = ('cross', 'ring')
CATEGORIES = [dict(id=42, name='cross'), dict(id=11, name='ring')]


def _background(rng, w: int, h: int) -> np.ndarray:
    """A colour gradient with noise and a few faint blobs."""
    base = rng.uniform(60, 200, size=3)
    slope = rng.uniform(-40, 40, size=(2, 3))
    ys, xs = np.mgrid[0:h, 0:w]
    img = (
        base
        + slope[0] * (xs / w)[..., None]
        + slope[1] * (ys / h)[..., None]
        + rng.normal(0, 12, size=(h, w, 3))
    )
    return np.clip(img, 0, 255).astype(np.uint8)


def _cross_polygon(cx, cy, arm, half) -> List[float]:
    """The 12 corners of a plus sign, clockwise."""
    pts = [
        (cx - half, cy - arm),
        (cx + half, cy - arm),
        (cx + half, cy - half),
        (cx + arm, cy - half),
        (cx + arm, cy + half),
        (cx + half, cy + half),
        (cx + half, cy + arm),
        (cx - half, cy + arm),
        (cx - half, cy + half),
        (cx - arm, cy + half),
        (cx - arm, cy - half),
        (cx - half, cy - half),
    ]
    return [float(v) for p in pts for v in p]


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: run lengths over the column-major pixels,
    starting with a run of zeros."""
    flat = mask.flatten(order='F')
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    return dict(size=list(mask.shape), counts=[int(c) for c in counts])


def box_of(mask: np.ndarray) -> List[float]:
    """The COCO box ``[x, y, w, h]`` of a binary mask."""
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() + 1 - xs.min()),
        float(ys.max() + 1 - ys.min()),
    ]


def _make_split(
    root: Path,
    img_dir: str,
    ann_file: str,
    count: int,
    rng,
    first_id: int,
    crowd: bool,
) -> Dict[str, int]:
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    (root / img_dir).mkdir(parents=True, exist_ok=True)
    (root / ann_file).parent.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in range(count):
        w, h = int(rng.integers(97, 181)), int(rng.integers(83, 161))
        background = Image.fromarray(_background(rng, w, h))
        img = background.copy()
        draw = ImageDraw.Draw(img)
        image_id = first_id + index
        name = f'{image_id:06d}.jpg'
        placed: List[Tuple[float, float, float]] = []
        n_objects = 0 if index == 0 else int(rng.integers(1, 5))
        for _ in range(n_objects):
            size = float(rng.uniform(11, 28))
            for _try in range(20):
                cx = float(rng.uniform(size + 1, w - size - 1))
                cy = float(rng.uniform(size + 1, h - size - 1))
                if all(
                    np.hypot(cx - x, cy - y) > size + s + 3
                    for x, y, s in placed
                ):
                    break
            else:
                continue
            placed.append((cx, cy, size))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            layer = Image.new('L', (w, h), 0)
            layer_draw = ImageDraw.Draw(layer)
            if rng.random() < 0.5:
                half = size * float(rng.uniform(0.22, 0.34))
                poly = _cross_polygon(cx, cy, size, half)
                draw.polygon(poly, fill=colour)
                layer_draw.polygon(poly, fill=1)
                mask = np.asarray(layer, dtype=np.uint8)
                segmentation = [poly]
                category = 42
            else:
                thick = size * float(rng.uniform(0.3, 0.45))
                outer = (cx - size, cy - size, cx + size, cy + size)
                inner = (
                    cx - size + thick,
                    cy - size + thick,
                    cx + size - thick,
                    cy + size - thick,
                )
                draw.ellipse(outer, fill=colour)
                layer_draw.ellipse(outer, fill=1)
                # the hole shows the background again
                hole = Image.new('L', (w, h), 0)
                ImageDraw.Draw(hole).ellipse(inner, fill=255)
                img.paste(background, (0, 0), hole)
                draw = ImageDraw.Draw(img)
                layer_draw.ellipse(inner, fill=0)
                mask = np.asarray(layer, dtype=np.uint8)
                rle = mask_utils.encode(np.asfortranarray(mask))
                segmentation = dict(
                    size=list(rle['size']), counts=rle['counts'].decode()
                )
                category = 11
            annotations.append(
                dict(
                    id=len(annotations) + first_id * 10 + 1,
                    image_id=image_id,
                    category_id=category,
                    segmentation=segmentation,
                    area=float(mask.sum()),
                    bbox=box_of(mask),
                    iscrowd=0,
                )
            )
        if crowd and index == 1:
            # a crowd region in a free corner: neither scored nor a miss
            mask = np.zeros((h, w), np.uint8)
            mask[: h // 6, : w // 6] = 1
            annotations.append(
                dict(
                    id=len(annotations) + first_id * 10 + 1,
                    image_id=image_id,
                    category_id=11,
                    segmentation=uncompressed_rle(mask),
                    area=float(mask.sum()),
                    bbox=box_of(mask),
                    iscrowd=1,
                )
            )
        img.save(root / img_dir / name, quality=95)
        images.append(dict(id=image_id, file_name=name, width=w, height=h))
    coco = dict(images=images, annotations=annotations, categories=CATEGORIES)
    (root / ann_file).write_text(json.dumps(coco))
    return dict(images=len(images), annotations=len(annotations))


def make_own_dataset(
    root: Path, num_train: int = 64, num_val: int = 16, seed: int = 0
) -> Dict[str, Dict[str, int]]:
    """Write the set under ``root`` in the recipes' default layout:
    ``annotations/{train,val}.json``, ``train/``, ``val/``."""
    rng = np.random.default_rng(seed)
    return dict(
        train=_make_split(
            root,
            'train/',
            'annotations/train.json',
            num_train,
            rng,
            1,
            crowd=False,
        ),
        val=_make_split(
            root,
            'val/',
            'annotations/val.json',
            num_val,
            rng,
            num_train + 1,
            crowd=True,
        ),
    )
