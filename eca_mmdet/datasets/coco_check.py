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
  masks in a file used to evaluate masks (pycocotools cannot score them), a
  data set that is empty after filtering;
* **skips** (counted in :class:`CocoFileReport`, logged as a warning): what
  mmdet drops by itself and the run stays valid without.
"""
import json
import math
import os.path as osp
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from ..engine.errors import EcaMmdetError

__all__ = ['AnnotationError', 'CocoFileReport', 'check_coco_file']

# Why an annotation is skipped, in the order they are reported.
SKIP_REASONS = {
    'unknown_image': 'refer to an image id not in "images"',
    'unknown_category': 'refer to a category id not in "categories"',
    'other_class': 'are of a category not in the config\'s classes',
    'ignore': 'are marked "ignore"',
    'outside_image': 'have a box outside the image',
    'zero_area': 'have a zero-area box (area <= 0, width or height < 1)',
    'bad_mask': 'have a malformed mask (polygon with < 6 or an odd number '
                'of coordinates, RLE without counts/size); mmdet ignores the '
                'instance',
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

    @property
    def num_skipped(self) -> int:
        return sum(len(ids) for ids in self.skipped.values())

    def warnings(self) -> List[str]:
        """One line per kind of skipped annotation."""
        lines = []
        for reason, ids in self.skipped.items():
            lines.append(
                f'{self.path}: skipping {len(ids)} of {self.num_annotations} '
                f'annotations that {SKIP_REASONS[reason]} (ids {_some(ids)})')
        return lines


def _some(items: Sequence[Any]) -> str:
    shown = ', '.join(str(i) for i in items[:SHOWN])
    return shown + (f', ... (+{len(items) - SHOWN})'
                    if len(items) > SHOWN else '')


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _load(path: str) -> dict:
    try:
        with open(path, 'rb') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise AnnotationError(
            f'annotation file {path} is not valid JSON: {e.msg} at line '
            f'{e.lineno} column {e.colno}') from None
    except UnicodeDecodeError:
        raise AnnotationError(
            f'annotation file {path} is not valid JSON (not UTF-8 text)'
        ) from None
    except OSError as e:
        raise AnnotationError(
            f'cannot read annotation file {path}: {e.strerror}') from None
    if not isinstance(data, dict):
        raise AnnotationError(
            f'annotation file {path} is not in COCO format: the top level is '
            f'a JSON {type(data).__name__}, not an object with "images", '
            '"annotations" and "categories"')
    missing = [k for k in ('images', 'annotations', 'categories')
               if not isinstance(data.get(k), list)]
    if missing:
        raise AnnotationError(
            f'annotation file {path} is not in COCO format: no '
            f'{" / ".join(repr(k) for k in missing)} list (keys found: '
            f'{", ".join(map(str, list(data)[:8])) or "none"})')
    return data


def _entries(path: str, data: dict, section: str,
             required: Dict[str, Any]) -> Dict[Any, dict]:
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
                    f'{where} has an invalid "{key}": {entry[key]!r:.80}')
        if entry['id'] in by_id:
            raise AnnotationError(
                f'{where}: the id {entry["id"]!r} is used twice in '
                f'"{section}"')
        by_id[entry['id']] = entry
    return by_id


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_bbox(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and len(value) == 4 and all(
        _is_number(v) for v in value)


def _mask_problem(segm: Any) -> Optional[str]:
    """``None`` for a usable mask; 'bad' for one mmdet ignores; 'invalid' for
    one it would crash on."""
    if isinstance(segm, dict):
        ok = segm.get('size') is not None and isinstance(
            segm.get('counts'), (list, str))
        return None if ok else 'bad'
    if not isinstance(segm, list):
        return 'bad'
    for polygon in segm:
        if not isinstance(polygon, list) or not all(
                _is_number(v) for v in polygon):
            return 'invalid'
    usable = [p for p in segm if len(p) >= 6 and len(p) % 2 == 0]
    return None if len(usable) == len(segm) else 'bad'


def check_coco_file(path: str,
                    classes: Optional[Sequence[str]] = None,
                    with_mask: bool = False,
                    eval_mask: bool = False,
                    test_mode: bool = False,
                    filter_cfg: Optional[dict] = None,
                    img_dir: Optional[str] = None) -> CocoFileReport:
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
        test_mode (bool): No filtering; only an empty file is an error.
        filter_cfg (dict, optional): The dataset's ``filter_cfg``
            (``filter_empty_gt``, ``min_size``), applied as mmdet does.
        img_dir (str, optional): Where the images are; files that do not
            exist are listed in the report.

    Returns:
        CocoFileReport: counts, skipped annotation ids, missing files.

    Raises:
        AnnotationError: naming the file and the first offending entry.
    """
    data = _load(path)
    images = _entries(path, data, 'images', {
        'id': _is_id,
        'file_name': lambda v: isinstance(v, str) and v != '',
        'width': lambda v: _is_number(v) and v > 0,
        'height': lambda v: _is_number(v) and v > 0,
    })
    categories = _entries(path, data, 'categories', {
        'id': _is_id,
        'name': lambda v: isinstance(v, str),
    })
    annotations = _entries(path, data, 'annotations', {
        'id': _is_id,
        'image_id': _is_id,
        'category_id': _is_id,
        'bbox': _is_bbox,
        'area': _is_number,
    })

    names = [c['name'] for c in categories.values()]
    if classes is None:
        wanted = set(categories)
    else:
        absent = [c for c in classes if c not in names]
        if absent:
            raise AnnotationError(
                f'{path}: the config\'s classes {_some(absent)} are not '
                f'category names of this file (its categories: '
                f'{", ".join(names) or "none"}); fix metainfo.classes')
        twice = sorted({n for n in names if names.count(n) > 1} &
                       set(classes))
        if twice:
            raise AnnotationError(
                f'{path}: category name(s) {", ".join(twice)} appear more '
                'than once in "categories"')
        wanted = {cid for cid, c in categories.items()
                  if c['name'] in set(classes)}

    skipped: Dict[str, List[Any]] = defaultdict(list)
    images_with_class = set()
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
        if ann.get('ignore', False):
            skipped['ignore'].append(ann_id)
            continue
        x, y, w, h = ann['bbox']
        inter_w = max(0, min(x + w, image['width']) - max(x, 0))
        inter_h = max(0, min(y + h, image['height']) - max(y, 0))
        if inter_w * inter_h == 0:
            skipped['outside_image'].append(ann_id)
            continue
        if ann['area'] <= 0 or w < 1 or h < 1:
            skipped['zero_area'].append(ann_id)
            continue
        if not (with_mask or eval_mask):
            continue
        where = f'{path}: annotations id {ann_id!r} (image {ann["image_id"]!r})'
        segm = ann.get('segmentation')
        if not segm:
            raise AnnotationError(
                f'{where} has no segmentation, but masks are '
                + ('evaluated' if eval_mask else 'trained') +
                '; give every instance a mask, or drop it from the file, or '
                'use a box-only config')
        problem = _mask_problem(segm)
        if problem == 'invalid' or (problem and eval_mask):
            raise AnnotationError(
                f'{where} has a malformed segmentation {segm!r:.80}: expected '
                'polygons (lists of >= 6 numbers, x,y pairs) or RLE '
                '({"size": [h, w], "counts": ...})')
        if problem:
            skipped['bad_mask'].append(ann_id)

    filter_cfg = filter_cfg or {}
    if test_mode:
        kept = len(images)
    else:
        min_size = filter_cfg.get('min_size', 0) or 0
        kept = sum(
            1 for img_id, img in images.items()
            if (not filter_cfg.get('filter_empty_gt', False)
                or img_id in images_with_class)
            and min(img['width'], img['height']) >= min_size)
    if kept == 0:
        if not images:
            why = 'it has no images'
        else:
            why = (f'none of its {len(images)} images has an annotation of '
                   'the config\'s classes' + (
                       f' and is at least {filter_cfg["min_size"]} px'
                       if filter_cfg.get('min_size') else '') +
                   ' (filter_cfg)')
        raise AnnotationError(f'{path}: the data set is empty: {why}')

    missing_files = []
    if img_dir is not None:
        missing_files = [
            osp.join(img_dir, img['file_name']) for img in images.values()
            if not osp.isfile(osp.join(img_dir, img['file_name']))
        ]
    order = list(SKIP_REASONS)
    return CocoFileReport(
        path=path,
        num_images=len(images),
        num_annotations=len(annotations),
        kept_images=kept,
        skipped={r: skipped[r] for r in order if skipped.get(r)},
        missing_files=missing_files)
