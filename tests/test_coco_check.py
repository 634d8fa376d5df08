"""COCO annotation files mmdet cannot use stop with one message naming the
file and the entry; what mmdet drops by itself is counted and reported."""

import copy
import json

import numpy as np
import pytest
from own_dataset import uncompressed_rle
from pycocotools import mask as mask_utils

from eca_mmdet.datasets import AnnotationError, check_coco_file

SQUARE = [[10, 10, 30, 10, 30, 30, 10, 30]]


def _rle(height, width, box=(0, 0, 10, 10)):
    """A compressed RLE (pycocotools' own encoding) of a filled box."""
    mask = np.zeros((height, width), dtype=np.uint8)
    x, y, w, h = box
    mask[y : y + h, x : x + w] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {'size': [height, width], 'counts': rle['counts'].decode()}


def _coco():
    """Two images; categories with non-contiguous ids; a crowd RLE."""
    return {
        'images': [
            {'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48},
            {'id': 7, 'file_name': 'b.png', 'width': 33, 'height': 65},
        ],
        'categories': [
            {'id': 3, 'name': 'square'},
            {'id': 12, 'name': 'star'},
        ],
        'annotations': [
            {
                'id': 1,
                'image_id': 1,
                'category_id': 3,
                'area': 400.0,
                'bbox': [10, 10, 20, 20],
                'segmentation': SQUARE,
                'iscrowd': 0,
            },
            {
                'id': 2,
                'image_id': 7,
                'category_id': 12,
                'area': 100,
                'bbox': [0, 0, 10, 10],
                'iscrowd': 1,
                'segmentation': _rle(65, 33),
            },
        ],
    }


def _write(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_valid_file_passes(tmp_path):
    report = check_coco_file(
        _write(tmp_path, _coco()),
        classes=('square', 'star'),
        with_mask=True,
        eval_mask=True,
    )
    assert (report.num_images, report.num_annotations) == (2, 2)
    assert report.kept_images == 2 and report.skipped == {}
    assert report.warnings() == []


@pytest.mark.parametrize(
    'content,needles',
    [
        ('{"images": [', ['not valid JSON', 'line 1']),
        ('[1, 2]', ['not in COCO format', 'list']),
        (
            json.dumps({'images': [], 'categories': []}),
            ['not in COCO format', "'annotations'"],
        ),
    ],
)
def test_not_json_or_not_coco(tmp_path, content, needles):
    path = _write(tmp_path, content)
    with pytest.raises(AnnotationError) as info:
        check_coco_file(path)
    assert path in str(info.value)
    for needle in needles:
        assert needle in str(info.value)


def _broken(change):
    data = _coco()
    change(data)
    return data


@pytest.mark.parametrize(
    'change,needles',
    [
        (
            lambda d: d['images'][1].pop('file_name'),
            ['images[1] (id 7)', 'no "file_name"'],
        ),
        (lambda d: d['images'][0].update(width=0), ['images[0]', '"width"']),
        (
            lambda d: d['annotations'][0].pop('bbox'),
            ['annotations[0] (id 1)', 'no "bbox"'],
        ),
        (
            lambda d: d['annotations'][1].update(bbox=[1, 2, 3]),
            ['annotations[1] (id 2)', '"bbox"'],
        ),
        (
            lambda d: d['annotations'][1].update(bbox=[1, 2, 'x', 4]),
            ['annotations[1]', '"bbox"'],
        ),
        (lambda d: d['annotations'][0].pop('area'), ['no "area"']),
        (lambda d: d['annotations'][1].update(id=1), ['id 1', 'used twice']),
        (lambda d: d['images'][1].update(id=1), ['used twice', '"images"']),
        (
            lambda d: d['annotations'][0].update(
                segmentation=[[1, 2, 'a', 4, 5, 6]]
            ),
            ['annotations id 1', 'malformed segmentation'],
        ),
    ],
)
def test_malformed_entries_name_the_entry(tmp_path, change, needles):
    path = _write(tmp_path, _broken(change))
    with pytest.raises(AnnotationError) as info:
        check_coco_file(path, with_mask=True)
    message = str(info.value)
    assert path in message
    for needle in needles:
        assert needle in message, message


def test_class_names_absent_from_categories(tmp_path):
    path = _write(tmp_path, _coco())
    with pytest.raises(AnnotationError) as info:
        check_coco_file(path, classes=('square', 'circle'))
    message = str(info.value)
    assert 'circle' in message and 'square, star' in message
    assert 'metainfo.classes' in message


def test_skipped_annotations_are_counted_by_reason(tmp_path):
    data = _coco()
    extra = [
        # unknown image, unknown category, class not in the config
        dict(id=10, image_id=99, category_id=3),
        dict(id=11, image_id=1, category_id=5),
        dict(id=12, image_id=1, category_id=12),
        # zero area, width < 1, box right of the image (width 64)
        dict(id=13, image_id=1, category_id=3, area=0),
        dict(id=14, image_id=1, category_id=3, bbox=[5, 5, 0.5, 9]),
        dict(id=15, image_id=1, category_id=3, bbox=[64, 0, 10, 10]),
        # polygons mmdet ignores: 4 coordinates, odd count
        dict(id=16, image_id=1, category_id=3, segmentation=[[1, 2, 3, 4]]),
        dict(
            id=17,
            image_id=1,
            category_id=3,
            segmentation=[[1, 1, 9, 1, 9, 9, 1]],
        ),
    ]
    for ann in extra:
        full = dict(copy.deepcopy(data['annotations'][0]), **ann)
        data['annotations'].append(full)
    path = _write(tmp_path, data)
    report = check_coco_file(path, classes=('square',), with_mask=True)
    assert report.skipped == {
        'unknown_image': [10],
        'unknown_category': [11],
        'other_class': [2, 12],
        'outside_image': [15],
        'zero_area': [13, 14],
        'bad_mask': [16, 17],
    }
    assert report.num_skipped == 9
    lines = report.warnings()
    assert len(lines) == 6
    assert any(
        '2 of 10 annotations' in ln and 'zero-area' in ln and '13, 14' in ln
        for ln in lines
    ), lines
    # a file used to score masks refuses what pycocotools cannot score
    with pytest.raises(AnnotationError, match='annotations id 16'):
        check_coco_file(path, eval_mask=True, test_mode=True)


def test_missing_segmentation_stops_only_when_masks_are_used(tmp_path):
    data = _coco()
    del data['annotations'][0]['segmentation']
    path = _write(tmp_path, data)
    check_coco_file(path, with_mask=False)  # boxes only: fine
    with pytest.raises(AnnotationError, match='id 1.*no segmentation'):
        check_coco_file(path, with_mask=True)


def test_empty_after_filtering(tmp_path):
    data = _coco()
    # only a star annotation on the 33 px wide image
    data['annotations'] = data['annotations'][1:]
    path = _write(tmp_path, data)
    keep_empty = check_coco_file(path, classes=('square',))
    assert keep_empty.kept_images == 2  # no filter: empty images train
    with pytest.raises(AnnotationError, match='data set is empty'):
        check_coco_file(
            path, classes=('square',), filter_cfg=dict(filter_empty_gt=True)
        )
    report = check_coco_file(
        path, classes=('star',), filter_cfg=dict(filter_empty_gt=True)
    )
    assert report.kept_images == 1
    with pytest.raises(AnnotationError, match='at least 40 px'):
        check_coco_file(
            path,
            classes=('star',),
            filter_cfg=dict(filter_empty_gt=True, min_size=40),
        )
    data['images'] = []
    with pytest.raises(AnnotationError, match='no images'):
        check_coco_file(_write(tmp_path, data, 'none.json'), test_mode=True)


def test_missing_image_files_are_listed(tmp_path):
    (tmp_path / 'img').mkdir()
    (tmp_path / 'img' / 'a.png').write_bytes(b'x')
    report = check_coco_file(
        _write(tmp_path, _coco()), img_dir=str(tmp_path / 'img')
    )
    assert report.missing_files == [str(tmp_path / 'img' / 'b.png')]


def test_matches_what_mmdet_keeps(tmp_path):
    """The annotations the check does not skip are exactly the instances
    mmdet's CocoDataset builds (same rules, independently applied)."""
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset

    data = _coco()
    for i, bbox in enumerate(
        [
            [60, 40, 10, 10],
            [-5, -5, 6, 6],
            [-20, 0, 10, 10],
            [0, 0, 0.9, 5],
            [10, 47.5, 5, 5],
        ]
    ):
        data['annotations'].append(
            dict(copy.deepcopy(data['annotations'][0]), id=100 + i, bbox=bbox)
        )
    path = _write(tmp_path, data)
    report = check_coco_file(path, classes=('square',))
    dataset = CocoDataset(
        ann_file=path,
        metainfo=dict(classes=('square',)),
        data_prefix=dict(img=''),
        pipeline=[],
        test_mode=True,
        serialize_data=False,
    )
    kept_boxes = sorted(
        tuple(inst['bbox'])
        for info in dataset.data_list
        for inst in info['instances']
    )
    skipped = {i for ids in report.skipped.values() for i in ids}
    expected = sorted(
        (
            a['bbox'][0],
            a['bbox'][1],
            a['bbox'][0] + a['bbox'][2],
            a['bbox'][1] + a['bbox'][3],
        )
        for a in data['annotations']
        if a['id'] not in skipped
    )
    assert kept_boxes == expected
    assert report.skipped['outside_image'] == [102]
    assert report.skipped['zero_area'] == [103]


def _with_annotation(**fields):
    """The test file plus annotation id 50 (a square on image 1, 64x48)
    with ``fields`` changed."""
    data = _coco()
    data['annotations'].append(
        dict(copy.deepcopy(data['annotations'][0]), id=50, **fields)
    )
    return data


@pytest.mark.parametrize(
    'bbox',
    [
        [20, 20, -5, 10],  # negative width
        [20, 20, 10, 0],  # zero height
        [70, 10, 10, 10],  # right of the 64 px wide image
        [-30, -30, 10, 10],  # above and left of it
    ],
)
def test_scored_file_reports_degenerate_boxes(tmp_path, bbox):
    """mmdet drops these boxes, but pycocotools scores the file with them
    as objects never detected: a file that is scored (test mode) counts
    them in a warning naming the file and the annotation; training skips
    them."""
    path = _write(tmp_path, _with_annotation(bbox=bbox))
    report = check_coco_file(path, test_mode=True)
    scored = {k: v for k, v in report.skipped.items() if k.endswith('_scored')}
    assert list(scored.values()) == [[50]], report.skipped
    (line,) = [ln for ln in report.warnings() if 'ids 50' in ln]
    assert line.startswith(f'{path}: 1 of ') and 'never detected' in line
    report = check_coco_file(path)
    assert 50 in report.skipped.get('zero_area', []) + report.skipped.get(
        'outside_image', []
    ) + report.skipped.get('negative_box', [])
    # a crowd region is ignored by pycocotools: skipped, not scored
    crowd = _with_annotation(bbox=bbox, iscrowd=1)
    report = check_coco_file(
        _write(tmp_path, crowd, 'crowd.json'), test_mode=True
    )
    assert not any(k.endswith('_scored') for k in report.skipped)


def _coco_ap(gt: dict, detections: list) -> float:
    """pycocotools' box AP@[.5:.95] of ``detections`` on ``gt``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(detections), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return float(evaluator.stats[0])


def test_tiny_and_ignored_boxes_are_reported_as_scored(tmp_path):
    """Boxes under 1 px (COCO 2017 val has a few) and "ignore" without
    "iscrowd": mmdet's data set drops them but pycocotools scores them.
    A scored file keeps working and says so; training says it skips them.
    pycocotools' AP shows the report is right."""
    data = _coco()
    data['annotations'].append(
        dict(
            copy.deepcopy(data['annotations'][0]),
            id=60,
            bbox=[40, 5, 0.5, 8],
            area=4,
        )
    )
    data['annotations'].append(
        dict(
            copy.deepcopy(data['annotations'][0]),
            id=61,
            bbox=[40, 20, 10, 10],
            ignore=1,
        )
    )
    path = _write(tmp_path, data)
    report = check_coco_file(path, test_mode=True)
    assert report.skipped == {'tiny_scored': [60], 'ignore_scored': [61]}
    lines = report.warnings()
    assert len(lines) == 2 and all(
        'scores them as ground truth' in ln and 'skipping' not in ln
        for ln in lines
    ), lines
    assert check_coco_file(path).skipped == {'ignore': [61], 'zero_area': [60]}
    # exact detections of the kept boxes only: pycocotools misses the two
    perfect = [
        dict(
            image_id=a['image_id'],
            category_id=a['category_id'],
            bbox=a['bbox'],
            score=1.0,
        )
        for a in _coco()['annotations']
    ]
    assert _coco_ap(_coco(), perfect) == pytest.approx(1.0)
    assert _coco_ap(data, perfect) < 0.9


@pytest.mark.parametrize(
    'segmentation,needle',
    [
        ({'size': [48], 'counts': 'PP`0'}, 'not [height, width]'),
        (
            {'size': [64, 48], 'counts': _rle(64, 48)['counts']},
            "[64, 48] that is not its image's [height, width] = [48, 64]",
        ),
        ({'size': [48, 64], 'counts': [100, 20, 3]}, 'covering 123 pixels'),
        ({'size': [48, 64], 'counts': [3072, -100, 100]}, 'non-negative'),
        ({'size': [48, 64], 'counts': 'PP`0'}, 'covering 16384 pixels'),
        ({'size': [48, 64], 'counts': 'abc~~'}, 'do not decode'),
        (
            {'size': [48, 64], 'counts': _rle(48, 64)['counts'][:-1] + 'P'},
            'do not decode',
        ),
    ],
)
def test_malformed_rle_names_the_annotation(tmp_path, segmentation, needle):
    """RLEs mmdet and pycocotools decode without checking: a wrong size or
    counts that do not cover the image crash training and evaluation (or
    read past the mask)."""
    path = _write(
        tmp_path, _with_annotation(segmentation=segmentation, iscrowd=1)
    )
    check_coco_file(path)  # masks not used: fine
    for kwargs in (dict(with_mask=True), dict(eval_mask=True, test_mode=True)):
        with pytest.raises(AnnotationError) as info:
            check_coco_file(path, **kwargs)
        message = str(info.value)
        assert message.startswith(f'{path}: annotations id 50 (image 1)')
        assert needle in message, message


def test_rle_counts_decode_like_pycocotools():
    """The reader of pycocotools' compressed counts gives the plain run
    lengths of the column-major pixels on random masks."""
    from eca_mmdet.datasets.coco_check import _rle_counts

    rng = np.random.default_rng(0)
    for shape in ((1, 1), (7, 5), (48, 64), (300, 200)):
        mask = (rng.random(shape) < rng.random()).astype(np.uint8)
        mask[: shape[0] // 2] = 0  # long runs: multi-group numbers
        compressed = mask_utils.encode(np.asfortranarray(mask))
        runs = _rle_counts(compressed['counts'].decode())
        assert runs == uncompressed_rle(mask)['counts'], shape


def _png(path, width, height):
    import cv2

    cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))


def test_image_headers_are_read_for_scored_sets(tmp_path):
    """With read_images, every image header is compared with its entry: a
    file of another size, an empty file and a non-image are named; a JPEG
    whose EXIF orientation turns it by 90 degrees is compared turned, as
    mmcv loads it."""
    from PIL import Image

    img_dir = tmp_path / 'img'
    img_dir.mkdir()
    _png(img_dir / 'a.png', 64, 48)
    _png(img_dir / 'b.png', 33, 65)
    path = _write(tmp_path, _coco())
    report = check_coco_file(path, img_dir=str(img_dir), read_images=True)
    assert report.bad_images == []

    _png(img_dir / 'b.png', 65, 33)
    report = check_coco_file(path, img_dir=str(img_dir), read_images=True)
    assert report.bad_images == [
        (
            str(img_dir / 'b.png'),
            'is 65x33 pixels but annotated as 33x65 (width x height)',
        )
    ]
    assert check_coco_file(path, img_dir=str(img_dir)).bad_images == []

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new('RGB', (65, 33)).save(
        img_dir / 'b.png', format='JPEG', exif=exif
    )
    import mmcv

    assert mmcv.imread(str(img_dir / 'b.png')).shape[:2] == (65, 33)
    report = check_coco_file(path, img_dir=str(img_dir), read_images=True)
    assert report.bad_images == []
    report = check_coco_file(
        path, img_dir=str(img_dir), read_images=True, exif_orientation=False
    )
    assert len(report.bad_images) == 1
    # a truncated file whose header is whole is left to the loader
    _png(img_dir / 'b.png', 33, 65)
    data = (img_dir / 'b.png').read_bytes()
    (img_dir / 'b.png').write_bytes(data[: len(data) // 2])
    report = check_coco_file(path, img_dir=str(img_dir), read_images=True)
    assert report.bad_images == []

    (img_dir / 'b.png').write_bytes(b'')
    (img_dir / 'a.png').write_bytes(b'no image here')
    report = check_coco_file(path, img_dir=str(img_dir), read_images=True)
    assert report.bad_images == [
        (
            str(img_dir / 'a.png'),
            'is not an image file (neither PIL nor OpenCV reads it)',
        ),
        (str(img_dir / 'b.png'), 'is an empty file (0 bytes)'),
    ]
