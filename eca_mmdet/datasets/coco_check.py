"""Check a COCO annotation file before mmdet reads it.

mmdet's ``CocoDataset`` fails on a malformed file with a raw ``KeyError`` or
``AssertionError`` from deep inside dataset building (or, for a missing
``segmentation``, from a dataloader worker in the first epoch), and silently
drops what it cannot use: class names absent from the file's categories,
annotations of unknown images or categories, zero-area or out-of-image boxes,
malformed polygons. :func:`check_coco_file` reads the file the way mmdet will
and sorts each problem into one of two kinds:

* **errors** (:class:`AnnotationError`, one message naming the file and the
  first offending entry): not JSON, not COCO, entries missing required keys,
  non-numeric boxes or polygon coordinates, duplicate ids, class names not in
  ``categories``, annotations without masks where masks are loaded, malformed
  masks in a file used to evaluate masks (pycocotools cannot score them),
  RLE masks whose ``size`` or ``counts`` do not describe their image (mmdet
  and pycocotools would crash or read past the mask), a data set that is
  empty after filtering;
* **skips** (counted in :class:`CocoFileReport`, logged as a warning): what
  mmdet drops by itself and the run stays valid without. In test mode the
  annotations mmdet drops but pycocotools still scores are reported as
  scored, not as skipped, by one rule whatever their size: boxes of zero,
  negative or under-1-px width or height, of area <= 0 or entirely outside
  their image (COCO 2017 train and val hold a few) are objects pycocotools
  counts as never detected, and ``ignore`` without ``iscrowd`` is scored as
  a plain object. A box never blocks a mask evaluation (pycocotools scores
  masks by their masks).

With ``read_images``, the header of every image file is read (PIL opens
lazily: the size without decoding) and a file that is empty, not an image,
or of another size than its ``width``/``height`` is listed.
"""

import json
import math
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..engine.errors import EcaMmdetError

__all__ = ['AnnotationError', 'CocoFileReport', 'check_coco_file']

# Why an annotation is skipped, in the order they are reported.
SKIP_REASONS = {
    'unknown_image': 'refer to an image id not in "images"',
    'unknown_category': 'refer to a category id not in "categories"',
    'other_class': "are of a category not in the config's classes",
    'ignore': 'are marked "ignore"',
    'outside_image': 'have a box outside the image',
    'negative_box': 'have a box of negative width or height',
    'zero_area': 'have a zero-area box (area <= 0, width or height < 1)',
    'bad_mask': 'have a malformed mask (polygon with < 6 or an odd number '
    'of coordinates, RLE without counts/size); mmdet ignores the '
    'instance',
}
# In test mode: annotations mmdet's data set drops but pycocotools, scoring
# the file, keeps as ground truth.
SCORED_REASONS = {
    'tiny_scored': 'have a box under 1 px wide or high, 0 px included (or '
    'area <= 0)',
    'negative_scored': 'have a box of negative width or height',
    'outside_scored': 'have a box entirely outside their image',
    'ignore_scored': 'are marked "ignore" without "iscrowd" (pycocotools '
    'only ignores crowd regions)',
}
# Ids named per problem in messages.
SHOWN = 5


class AnnotationError(EcaMmdetError):
    """An annotation file mmdet cannot use, or a data set left empty."""


@dataclass
class CocoFileReport:
    """What :func:`check_coco_file` found in a usable file."""

    path: str
    num_images: int
    num_annotations: int
    #: images a training set keeps after ``filter_cfg`` (all in test mode)
    kept_images: int
    #: reason (a key of ``SKIP_REASONS``) -> ids of the skipped annotations
    skipped: Dict[str, List[Any]] = field(default_factory=dict)
    #: image files that do not exist (when ``img_dir`` was given)
    missing_files: List[str] = field(default_factory=list)
    #: ids of the images holding a non-crowd annotation of the classes that
    #: mmdet keeps (what a metric can score)
    scored_images: Set[Any] = field(default_factory=set)
    #: ``(image file, what is wrong)`` for image files that are empty, not
    #: images, or not of their annotated size (with ``read_images``)
    bad_images: List[Tuple[str, str]] = field(default_factory=list)
    #: ``(image file, EXIF orientation, annotated in the stored frame)`` of
    #: the images the loader turns or flips by their EXIF orientation (with
    #: ``read_images``)
    exif_oriented: List[Tuple[str, int, bool]] = field(default_factory=list)

    @property
    def num_skipped(self) -> int:
        return sum(len(ids) for ids in self.skipped.values())

    def warnings(self) -> List[str]:
        """One line per kind of skipped (or dropped but scored)
        annotation."""
        lines = []
        for reason, ids in self.skipped.items():
            if reason in SCORED_REASONS:
                lines.append(
                    f'{self.path}: {len(ids)} of {self.num_annotations} '
                    f'annotations {SCORED_REASONS[reason]} (ids '
                    f"{_some(ids)}): mmdet's data set leaves them out, but "
                    'a CocoMetric reading this file scores them as ground '
                    'truth'
                    + (
                        ' (a box as an object never detected; masks by '
                        'their mask)'
                        if reason != 'ignore_scored'
                        else ''
                    )
                )
                continue
            lines.append(
                f'{self.path}: skipping {len(ids)} of {self.num_annotations} '
                f'annotations that {SKIP_REASONS[reason]} (ids {_some(ids)})'
            )
        if self.exif_oriented:
            lines.append(self._exif_warning())
        return lines

    def _exif_warning(self) -> str:
        stored = [f for f, _, in_stored in self.exif_oriented if in_stored]
        file, orientation, _ = self.exif_oriented[0]
        line = (
            f'{self.path}: {len(self.exif_oriented)} of {self.num_images} '
            f'images carry an EXIF orientation that the image loader applies '
            f'(turns or flips them), e.g. {file} (orientation {orientation})'
            ': their annotations must be drawn on the turned image'
        )
        if stored:
            line += (
                f'; {len(stored)} of them (e.g. {stored[0]}) are annotated '
                'with the width and height of the stored, unturned image, so '
                'their boxes and masks are likely misplaced'
            )
        return line + (
            '. If the annotations are of the stored pixels, set '
            "color_type='color_ignore_orientation' in LoadImageFromFile of "
            'the pipeline'
        )


def _some(items: Sequence[Any]) -> str:
    shown = ', '.join(str(i) for i in items[:SHOWN])
    return shown + (
        f', ... (+{len(items) - SHOWN})' if len(items) > SHOWN else ''
    )


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _load(path: str) -> dict:
    try:
        with open(path, 'rb') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(
            f'annotation file {path} is not valid JSON: {e.msg} at line '
            f'{e.lineno} column {e.colno}'
        ) from None
    except UnicodeDecodeError:
        raise AnnotationError(
            f'annotation file {path} is not valid JSON (not UTF-8 text)'
        ) from None
    except OSError as e:
        raise AnnotationError(
            f'cannot read annotation file {path}: {e.strerror}'
        ) from None
    if not isinstance(data, dict):
        raise AnnotationError(
            f'annotation file {path} is not in COCO format: the top level is '
            f'a JSON {type(data).__name__}, not an object with "images", '
            '"annotations" and "categories"'
        )
    missing = [
        k
        for k in ('images', 'annotations', 'categories')
        if not isinstance(data.get(k), list)
    ]
    if missing:
        raise AnnotationError(
            f'annotation file {path} is not in COCO format: no '
            f'{" / ".join(repr(k) for k in missing)} list (keys found: '
            f'{", ".join(map(str, list(data)[:8])) or "none"})'
        )
    return data


def _entries(
    path: str, data: dict, section: str, required: Dict[str, Any]
) -> Dict[Any, dict]:
    """``id -> entry`` of ``data[section]``; each entry must be an object
    holding ``required`` keys whose values pass the given checks."""
    by_id = {}
    for i, entry in enumerate(data[section]):
        where = f'{path}: {section}[{i}]'
        if not isinstance(entry, dict):
            raise AnnotationError(f'{where} is not an object')
        if 'id' in entry:
            where += f' (id {entry["id"]})'
        for key, check in required.items():
            if key not in entry:
                raise AnnotationError(f'{where} has no "{key}"')
            if not check(entry[key]):
                raise AnnotationError(
                    f'{where} has an invalid "{key}": {entry[key]!r:.80}'
                )
        if entry['id'] in by_id:
            raise AnnotationError(
                f'{where}: the id {entry["id"]!r} is used twice in "{section}"'
            )
        by_id[entry['id']] = entry
    return by_id


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_bbox(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) == 4
        and all(_is_number(v) for v in value)
    )


def _mask_problem(segm: Any) -> Optional[str]:
    """``None`` for a usable mask; 'bad' for one mmdet ignores; 'invalid' for
    one it would crash on."""
    if isinstance(segm, dict):
        ok = segm.get('size') is not None and isinstance(
            segm.get('counts'), (list, str)
        )
        return None if ok else 'bad'
    if not isinstance(segm, list):
        return 'bad'
    for polygon in segm:
        if not isinstance(polygon, list) or not all(
            _is_number(v) for v in polygon
        ):
            return 'invalid'
    usable = [p for p in segm if len(p) >= 6 and len(p) % 2 == 0]
    return None if len(usable) == len(segm) else 'bad'


def _rle_counts(counts: str) -> Optional[List[int]]:
    """The run lengths of a compressed COCO RLE string, or None when the
    string is not one (a character outside '0'..'o', a number cut short, a
    negative run)."""
    runs: List[int] = []
    value = shift = 0
    for char in counts:
        code = ord(char) - 48
        if not 0 <= code < 64:
            return None
        value |= (code & 0x1F) << shift
        shift += 5
        if code & 0x20:
            continue  # more 5-bit groups follow
        if code & 0x10:
            value -= 1 << shift  # sign-extend
        if len(runs) > 2:
            value += runs[-2]  # runs after the third are stored as deltas
        if value < 0:
            return None
        runs.append(value)
        value = shift = 0
    return runs if shift == 0 else None


def _rle_problem(segm: dict, height: Any, width: Any) -> Optional[str]:
    """What is wrong with the RLE ``segm`` of an image of ``height`` x
    ``width``: ``size`` must be ``[height, width]`` and the runs must cover
    exactly ``height * width`` pixels (pycocotools decodes them without
    checking)."""
    size = segm['size']
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0
            for v in size
        )
    ):
        return f'has an RLE "size" {size!r:.40} that is not [height, width]'
    if list(size) != [height, width]:
        return (
            f'has an RLE "size" {list(size)} that is not its image\'s '
            f'[height, width] = [{height:g}, {width:g}]'
        )
    counts = segm['counts']
    if isinstance(counts, str):
        runs = _rle_counts(counts)
        if runs is None:
            return (
                f'has RLE "counts" {counts!r:.40} that do not decode as '
                'a compressed COCO RLE string'
            )
    elif all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for v in counts
    ):
        runs = counts
    else:
        return (
            f'has RLE "counts" {counts!r:.40} that are not all '
            'non-negative integers'
        )
    if sum(runs) != size[0] * size[1]:
        return (
            f'has RLE "counts" covering {sum(runs)} pixels, not '
            f'height * width = {size[0] * size[1]}'
        )
    return None


def _image_problem(
    path: str,
    width: Any,
    height: Any,
    exif_orientation: bool = True,
    oriented: Optional[List[Tuple[str, int, bool]]] = None,
) -> Optional[str]:
    """What is wrong with the image file ``path`` annotated as ``width`` x
    ``height``: empty, not an image, or of another size (either way round
    when its EXIF orientation turns it by 90 degrees and the loader applies
    EXIF, ``exif_orientation``). Reads only the header, except for the rare
    file PIL cannot identify (then OpenCV decodes it, as mmcv's loader
    would). An image whose EXIF orientation the loader applies (other than
    1) is appended to ``oriented`` as ``(path, orientation, annotated in
    the stored frame)``."""
    try:
        if osp.getsize(path) == 0:
            return 'is an empty file (0 bytes)'
    except OSError:
        return None  # missing files are listed separately
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow comes with mmengine
        return None
    turned = False
    orientation = None
    try:
        with Image.open(path) as img:
            w, h = img.size
            if exif_orientation and 'exif' in img.info:
                # EXIF read from the header (getexif() may decode a PNG)
                exif = Image.Exif()
                exif.load(img.info['exif'])
                orientation = exif.get(0x0112)
                turned = orientation in (5, 6, 7, 8)
    except UnidentifiedImageError:
        import cv2

        array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if array is None:
            return 'is not an image file (neither PIL nor OpenCV reads it)'
        h, w = array.shape[:2]
    except Exception as e:  # noqa: BLE001 - a broken header
        return f'has an unreadable header ({type(e).__name__}: {e})'
    # turned by 90 degrees: whether the decoder applies it depends on the
    # format and backend; the loader compares the decoded image exactly
    if (w, h) != (width, height) and not (
        turned and (h, w) == (width, height)
    ):
        return (
            f'is {w}x{h} pixels but annotated as {width:g}x{height:g} '
            '(width x height)'
        )
    if oriented is not None and orientation in (2, 3, 4, 5, 6, 7, 8):
        stored_frame = turned and (w, h) == (width, height) and w != h
        oriented.append((path, int(orientation), stored_frame))
    return None


def check_coco_file(
    path: str,
    classes: Optional[Sequence[str]] = None,
    with_mask: bool = False,
    eval_mask: bool = False,
    test_mode: bool = False,
    filter_cfg: Optional[dict] = None,
    img_dir: Optional[str] = None,
    read_images: bool = False,
    exif_orientation: bool = True,
) -> CocoFileReport:
    """Check the COCO annotation file ``path`` as mmdet's ``CocoDataset``
    with these settings would read it.

    Args:
        path (str): The annotation file.
        classes (Sequence[str], optional): The config's class names
            (``metainfo.classes``); all must be category names of the file.
            None: all categories.
        with_mask (bool): Masks are loaded (``LoadAnnotations(with_mask=
            True)``): every used annotation needs a ``segmentation``.
        eval_mask (bool): The file scores masks (``CocoMetric`` 'segm'):
            malformed masks are errors, not skips.
        test_mode (bool): The file is scored (a val/test set or a
            ``CocoMetric`` ``ann_file``): no filtering; an empty file, and
            boxes that are empty or entirely outside their image (except
            crowd regions), are errors; tiny boxes are reported as scored.
        filter_cfg (dict, optional): The dataset's ``filter_cfg``
            (``filter_empty_gt``, ``min_size``), applied as mmdet does.
        img_dir (str, optional): Where the images are; files that do not
            exist are listed in the report.
        read_images (bool): With ``img_dir``, also read each image file's
            header and list the empty, unreadable and wrongly sized ones
            (``CocoFileReport.bad_images``).
        exif_orientation (bool): The loader applies the EXIF rotation
            (mmcv's default ``color_type='color'``): an image turned by 90
            degrees by it may match either way round.

    Returns:
        CocoFileReport: counts, skipped annotation ids, missing files.

    Raises:
        AnnotationError: naming the file and the first offending entry.
    """
    data = _load(path)
    images = _entries(
        path,
        data,
        'images',
        {
            'id': _is_id,
            'file_name': lambda v: isinstance(v, str) and v != '',
            'width': lambda v: _is_number(v) and v > 0,
            'height': lambda v: _is_number(v) and v > 0,
        },
    )
    categories = _entries(
        path,
        data,
        'categories',
        {
            'id': _is_id,
            'name': lambda v: isinstance(v, str),
        },
    )
    annotations = _entries(
        path,
        data,
        'annotations',
        {
            'id': _is_id,
            'image_id': _is_id,
            'category_id': _is_id,
            'bbox': _is_bbox,
            'area': _is_number,
        },
    )

    names = [c['name'] for c in categories.values()]
    if classes is None:
        wanted = set(categories)
    else:
        absent = [c for c in classes if c not in names]
        if absent:
            raise AnnotationError(
                f"{path}: the config's classes {_some(absent)} are not "
                f'category names of this file (its categories: '
                f'{", ".join(names) or "none"}); fix metainfo.classes'
            )
        twice = sorted({n for n in names if names.count(n) > 1} & set(classes))
        if twice:
            raise AnnotationError(
                f'{path}: category name(s) {", ".join(twice)} appear more '
                'than once in "categories"'
            )
        in_file = [n for n in names if n in set(classes)]
        if in_file != list(classes):
            raise AnnotationError(
                f"{path}: the config's classes ({', '.join(classes)}) are "
                "in another order than this file's categories "
                f'({", ".join(in_file)}); mmdet numbers the labels in the '
                "file's order, so renderings and predictions would name "
                'each class after another: list metainfo.classes as '
                f'{tuple(in_file)!r}'
            )
        wanted = {
            cid for cid, c in categories.items() if c['name'] in set(classes)
        }

    skipped: Dict[str, List[Any]] = defaultdict(list)
    images_with_class = set()
    scored_images = set()
    for ann_id, ann in annotations.items():
        image = images.get(ann['image_id'])
        if image is None:
            skipped['unknown_image'].append(ann_id)
            continue
        if ann['category_id'] not in categories:
            skipped['unknown_category'].append(ann_id)
            continue
        if ann['category_id'] not in wanted:
            skipped['other_class'].append(ann_id)
            continue
        images_with_class.add(ann['image_id'])
        # pycocotools ignores crowd regions only (it overwrites "ignore")
        scored = test_mode and not ann.get('iscrowd', 0)
        x, y, w, h = ann['bbox']
        inter_w = max(0, min(x + w, image['width']) - max(x, 0))
        inter_h = max(0, min(y + h, image['height']) - max(y, 0))
        # what mmdet's data set drops; a scored file keeps it as ground
        # truth (pycocotools): (reason when skipped, reason when scored)
        if ann.get('ignore', False):
            drop = ('ignore', 'ignore_scored')
        elif w < 0 or h < 0:
            drop = ('negative_box', 'negative_scored')
        elif w == 0 or h == 0:
            drop = ('zero_area', 'tiny_scored')
        elif inter_w * inter_h == 0:
            drop = ('outside_image', 'outside_scored')
        elif ann['area'] <= 0 or w < 1 or h < 1:
            drop = ('zero_area', 'tiny_scored')
        else:
            drop = None
        if drop is not None:
            skipped[drop[scored]].append(ann_id)
            if scored:
                scored_images.add(ann['image_id'])
            continue
        if not ann.get('iscrowd', 0):
            scored_images.add(ann['image_id'])
        if not (with_mask or eval_mask):
            continue
        where = (
            f'{path}: annotations id {ann_id!r} (image {ann["image_id"]!r})'
        )
        segm = ann.get('segmentation')
        if not segm:
            raise AnnotationError(
                f'{where} has no segmentation, but masks are '
                + ('evaluated' if eval_mask else 'trained')
                + '; give every instance a mask, or drop it from the file, or '
                'use a box-only config'
            )
        problem = _mask_problem(segm)
        if problem == 'invalid' or (problem and eval_mask):
            raise AnnotationError(
                f'{where} has a malformed segmentation {segm!r:.80}: expected '
                'polygons (lists of >= 6 numbers, x,y pairs) or RLE '
                '({"size": [h, w], "counts": ...})'
            )
        if problem:
            skipped['bad_mask'].append(ann_id)
        elif isinstance(segm, dict):
            rle = _rle_problem(segm, image['height'], image['width'])
            if rle:
                raise AnnotationError(
                    f'{where} {rle}; mmdet and pycocotools cannot use this '
                    'mask: fix or remove it'
                )

    filter_cfg = filter_cfg or {}
    if test_mode:
        kept = len(images)
    else:
        min_size = filter_cfg.get('min_size', 0) or 0
        kept = sum(
            1
            for img_id, img in images.items()
            if (
                not filter_cfg.get('filter_empty_gt', False)
                or img_id in images_with_class
            )
            and min(img['width'], img['height']) >= min_size
        )
    if kept == 0:
        if not images:
            why = 'it has no images'
        else:
            why = (
                f'none of its {len(images)} images has an annotation of '
                "the config's classes"
                + (
                    f' and is at least {filter_cfg["min_size"]} px'
                    if filter_cfg.get('min_size')
                    else ''
                )
                + ' (filter_cfg)'
            )
        raise AnnotationError(f'{path}: the data set is empty: {why}')

    missing_files, bad_images = [], []
    oriented: List[Tuple[str, int, bool]] = []
    if img_dir is not None:
        for img in images.values():
            file = osp.join(img_dir, img['file_name'])
            if not osp.isfile(file):
                missing_files.append(file)
            elif read_images:
                problem = _image_problem(
                    file,
                    img['width'],
                    img['height'],
                    exif_orientation,
                    oriented,
                )
                if problem:
                    bad_images.append((file, problem))
    order = list(SKIP_REASONS) + list(SCORED_REASONS)
    return CocoFileReport(
        path=path,
        num_images=len(images),
        num_annotations=len(annotations),
        kept_images=kept,
        skipped={r: skipped[r] for r in order if skipped.get(r)},
        missing_files=missing_files,
        scored_images=scored_images,
        bad_images=bad_images,
        exif_oriented=oriented,
    )
