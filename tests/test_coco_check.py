"""COCO annotation files mmdet cannot use stop with one message naming the
file and the entry; what mmdet drops by itself is counted and reported."""
import copy
import json

import pytest

from eca_mmdet.datasets import AnnotationError, check_coco_file

SQUARE = [[10, 10, 30, 10, 30, 30, 10, 30]]


def _coco():
    """Two images; categories with non-contiguous ids; a crowd RLE."""
    return {
        'images': [
            {'id': 1, 'file_name': 'a.png', 'width': 64, 'height': 48},
            {'id': 7, 'file_name': 'b.png', 'width': 33, 'height': 65},
        ],
        'categories': [{'id': 3, 'name': 'square'},
                       {'id': 12, 'name': 'star'}],
        'annotations': [
            {'id': 1, 'image_id': 1, 'category_id': 3, 'area': 400.0,
             'bbox': [10, 10, 20, 20], 'segmentation': SQUARE,
             'iscrowd': 0},
            {'id': 2, 'image_id': 7, 'category_id': 12, 'area': 100,
             'bbox': [0, 0, 10, 10], 'iscrowd': 1,
             'segmentation': {'size': [65, 33], 'counts': 'PP`0'}},
        ],
    }


def _write(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_valid_file_passes(tmp_path):
    report = check_coco_file(_write(tmp_path, _coco()),
                             classes=('square', 'star'), with_mask=True,
                             eval_mask=True)
    assert (report.num_images, report.num_annotations) == (2, 2)
    assert report.kept_images == 2 and report.skipped == {}
    assert report.warnings() == []


@pytest.mark.parametrize('content,needles', [
    ('{"images": [', ['not valid JSON', 'line 1']),
    ('[1, 2]', ['not in COCO format', 'list']),
    (json.dumps({'images': [], 'categories': []}),
     ['not in COCO format', "'annotations'"]),
])
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


@pytest.mark.parametrize('change,needles', [
    (lambda d: d['images'][1].pop('file_name'),
     ['images[1] (id 7)', 'no "file_name"']),
    (lambda d: d['images'][0].update(width=0), ['images[0]', '"width"']),
    (lambda d: d['annotations'][0].pop('bbox'),
     ['annotations[0] (id 1)', 'no "bbox"']),
    (lambda d: d['annotations'][1].update(bbox=[1, 2, 3]),
     ['annotations[1] (id 2)', '"bbox"']),
    (lambda d: d['annotations'][1].update(bbox=[1, 2, 'x', 4]),
     ['annotations[1]', '"bbox"']),
    (lambda d: d['annotations'][0].pop('area'), ['no "area"']),
    (lambda d: d['annotations'][1].update(id=1), ['id 1', 'used twice']),
    (lambda d: d['images'][1].update(id=1), ['used twice', '"images"']),
    (lambda d: d['annotations'][0].update(
        segmentation=[[1, 2, 'a', 4, 5, 6]]),
     ['annotations id 1', 'malformed segmentation']),
])
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
        dict(id=17, image_id=1, category_id=3,
             segmentation=[[1, 1, 9, 1, 9, 9, 1]]),
    ]
    for ann in extra:
        full = dict(copy.deepcopy(data['annotations'][0]), **ann)
        data['annotations'].append(full)
    path = _write(tmp_path, data)
    report = check_coco_file(path, classes=('square',), with_mask=True)
    assert report.skipped == {
        'unknown_image': [10], 'unknown_category': [11],
        'other_class': [2, 12], 'outside_image': [15],
        'zero_area': [13, 14], 'bad_mask': [16, 17]}
    assert report.num_skipped == 9
    lines = report.warnings()
    assert len(lines) == 6
    assert any('2 of 10 annotations' in ln and 'zero-area' in ln
               and '13, 14' in ln for ln in lines), lines
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
        check_coco_file(path, classes=('square',),
                        filter_cfg=dict(filter_empty_gt=True))
    report = check_coco_file(path, classes=('star',),
                             filter_cfg=dict(filter_empty_gt=True))
    assert report.kept_images == 1
    with pytest.raises(AnnotationError, match='at least 40 px'):
        check_coco_file(path, classes=('star',),
                        filter_cfg=dict(filter_empty_gt=True, min_size=40))
    data['images'] = []
    with pytest.raises(AnnotationError, match='no images'):
        check_coco_file(_write(tmp_path, data, 'none.json'), test_mode=True)


def test_missing_image_files_are_listed(tmp_path):
    (tmp_path / 'img').mkdir()
    (tmp_path / 'img' / 'a.png').write_bytes(b'x')
    report = check_coco_file(_write(tmp_path, _coco()),
                             img_dir=str(tmp_path / 'img'))
    assert report.missing_files == [str(tmp_path / 'img' / 'b.png')]


def test_matches_what_mmdet_keeps(tmp_path):
    """The annotations the check does not skip are exactly the instances
    mmdet's CocoDataset builds (same rules, independently applied)."""
    pytest.importorskip('mmdet')
    from mmdet.datasets import CocoDataset
    data = _coco()
    for i, bbox in enumerate([[60, 40, 10, 10], [-5, -5, 6, 6],
                              [-20, 0, 10, 10], [0, 0, 0.9, 5],
                              [10, 47.5, 5, 5]]):
        data['annotations'].append(dict(
            copy.deepcopy(data['annotations'][0]), id=100 + i, bbox=bbox))
    path = _write(tmp_path, data)
    report = check_coco_file(path, classes=('square',))
    dataset = CocoDataset(ann_file=path, metainfo=dict(classes=('square',)),
                          data_prefix=dict(img=''), pipeline=[],
                          test_mode=True, serialize_data=False)
    kept_boxes = sorted(tuple(inst['bbox']) for info in dataset.data_list
                        for inst in info['instances'])
    skipped = {i for ids in report.skipped.values() for i in ids}
    expected = sorted(
        (a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2],
         a['bbox'][1] + a['bbox'][3]) for a in data['annotations']
        if a['id'] not in skipped)
    assert kept_boxes == expected
    assert report.skipped['outside_image'] == [102]
    assert report.skipped['zero_area'] == [103]
