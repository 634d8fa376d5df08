"""Tests for the synthetic COCO "shapes" dataset generator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('pycocotools')
from PIL import Image  # noqa: E402
from pycocotools import mask as mask_utils  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from eca_mmdet.datasets import (  # noqa: E402
    CATEGORIES,
    CLASSES,
    make_shapes_dataset,
)

REPO = Path(__file__).resolve().parents[1]
N_TRAIN, N_VAL = 30, 10


@pytest.fixture(scope='module')
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp('shapes')
    return make_shapes_dataset(out, num_train=N_TRAIN, num_val=N_VAL, seed=0)


def _load(info: dict, split: str) -> dict:
    return json.loads(Path(info[split]['ann_file']).read_text())


def _all_anns(info: dict) -> list[dict]:
    return [
        a
        for split in ('train', 'val')
        for a in _load(info, split)['annotations']
    ]


def _tight_bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [
        xs.min(),
        ys.min(),
        xs.max() - xs.min() + 1,
        ys.max() - ys.min() + 1,
    ]


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*'))
        if p.is_file()
    }


def test_layout_and_image_files(dataset: dict) -> None:
    root = Path(dataset['root'])
    for split, n in (('train', N_TRAIN), ('val', N_VAL)):
        assert Path(dataset[split]['ann_file']) == (
            root / 'annotations' / f'instances_{split}.json'
        )
        coco = _load(dataset, split)
        assert dataset[split]['num_images'] == len(coco['images']) == n
        assert dataset[split]['num_annotations'] == len(coco['annotations'])
        # what tools/quickstart.sh compares to decide whether to regenerate
        from eca_mmdet.datasets.shapes import GENERATOR_VERSION

        assert coco['info']['version'] == GENERATOR_VERSION
        assert len(list((root / split).glob('*.png'))) == n
        assert len({im['id'] for im in coco['images']}) == n
        for im in coco['images']:
            with Image.open(root / split / im['file_name']) as img:
                assert img.size == (im['width'], im['height'])
                assert img.mode == 'RGB'
        ann_ids = [a['id'] for a in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)


def test_masks_consistent_with_bbox_and_area(dataset: dict) -> None:
    for split in ('train', 'val'):
        coco = COCO(dataset[split]['ann_file'])
        assert len(coco.getAnnIds()) > 0
        for ann in coco.loadAnns(coco.getAnnIds()):
            img = coco.imgs[ann['image_id']]
            mask = coco.annToMask(ann)
            assert mask.shape == (img['height'], img['width'])
            assert mask.sum() >= 20
            assert mask.sum() == ann['area']
            assert np.allclose(_tight_bbox(mask), ann['bbox'], atol=1.0)
            assert ann['category_id'] in coco.cats


def test_visible_masks_do_not_overlap(dataset: dict) -> None:
    coco = COCO(dataset['train']['ann_file'])
    multi = 0
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        if not anns:
            continue
        masks = np.stack([coco.annToMask(a) for a in anns]).astype(int)
        assert masks.sum(axis=0).max() == 1
        multi += len(anns) > 1
    assert multi >= N_TRAIN // 3


def test_segmentation_forms(dataset: dict) -> None:
    anns = _all_anns(dataset)
    polys = [a for a in anns if isinstance(a['segmentation'], list)]
    rles = [
        a['segmentation'] for a in anns if isinstance(a['segmentation'], dict)
    ]
    assert polys and rles
    assert any(isinstance(r['counts'], str) for r in rles)
    assert any(isinstance(r['counts'], list) for r in rles)
    for ann in polys:  # polygons are exact for fully visible instances
        assert ann['iscrowd'] == 0
        assert all(
            len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation']
        )
    crowd = [a for a in anns if a['iscrowd']]
    assert crowd, 'expected a crowd region in 30 train images'
    assert all(isinstance(a['segmentation']['counts'], list) for a in crowd)
    assert len(crowd) <= 0.02 * len(anns)


def test_segmentations_decode_to_area(dataset: dict) -> None:
    coco = _load(dataset, 'train')
    sizes = {im['id']: (im['height'], im['width']) for im in coco['images']}
    for ann in coco['annotations']:
        h, w = sizes[ann['image_id']]
        segm = ann['segmentation']
        if isinstance(segm, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
        elif isinstance(segm['counts'], list):
            assert sum(segm['counts']) == h * w
            rle = mask_utils.frPyObjects(segm, h, w)
        else:
            rle = {'size': segm['size'], 'counts': segm['counts'].encode()}
        assert float(mask_utils.area(rle)) == ann['area']


def test_categories_non_contiguous(dataset: dict) -> None:
    cats = _load(dataset, 'train')['categories']
    ids = [c['id'] for c in cats]
    assert cats == CATEGORIES
    assert 3 <= len(ids) <= 5
    assert ids != list(range(1, len(ids) + 1))
    assert tuple(c['name'] for c in cats) == CLASSES
    used = {a['category_id'] for a in _all_anns(dataset)}
    assert used == set(ids)


def test_empty_images_and_odd_sizes(dataset: dict) -> None:
    coco = _load(dataset, 'train')
    with_anns = {a['image_id'] for a in coco['annotations']}
    empty = [im for im in coco['images'] if im['id'] not in with_anns]
    assert 1 <= len(empty) <= N_TRAIN // 5
    odd = [
        im for im in coco['images'] if im['width'] % 32 or im['height'] % 32
    ]
    assert odd and len(odd) < N_TRAIN // 2
    assert any(im['width'] != im['height'] for im in odd)


def test_object_sizes_and_counts(dataset: dict) -> None:
    coco = _load(dataset, 'train')
    per_image: dict[int, int] = {}
    for ann in coco['annotations']:
        per_image[ann['image_id']] = per_image.get(ann['image_id'], 0) + 1
        if isinstance(ann['segmentation'], list):  # unoccluded instance
            assert 12 <= max(ann['bbox'][2:]) <= 70
    assert max(per_image.values()) <= 6  # 5 objects + optional crowd


def test_occluded_objects_stay_mostly_visible() -> None:
    """Every object keeps at least 60% of its full shape visible under the
    shapes painted over it (visibility recomputed here from the full masks),
    and the generator still produces occluded objects."""
    from eca_mmdet.datasets import shapes

    occluded = 0
    for index in range(40):
        rng = np.random.default_rng([5, 0, index])
        _, layers = shapes._render(
            rng, 128, 128, shapes.MAX_OBJECTS, crowd=False
        )
        covered = np.zeros((128, 128), bool)
        for layer in reversed(layers):  # top to bottom
            full = layer['mask']
            visible = (full & ~covered).sum()
            assert visible >= 0.6 * full.sum()
            occluded += visible < full.sum()
            covered |= full
    assert occluded >= 10


def test_deterministic_per_seed(dataset: dict, tmp_path: Path) -> None:
    same = make_shapes_dataset(tmp_path / 'same', N_TRAIN, N_VAL, seed=0)
    other = make_shapes_dataset(tmp_path / 'other', N_TRAIN, N_VAL, seed=1)
    ref = _tree(Path(dataset['root']))
    assert len(ref) == N_TRAIN + N_VAL + 2
    assert _tree(Path(same['root'])) == ref
    diff = _tree(Path(other['root']))
    assert diff.keys() == ref.keys()
    assert all(diff[k] != ref[k] for k in ref)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location(
        'make_shapes_dataset', REPO / 'tools' / 'make_shapes_dataset.py'
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / 'cli'
    cli.main(
        [
            str(out),
            '--train',
            '4',
            '--val',
            '2',
            '--seed',
            '3',
            '--img-size',
            '96',
        ]
    )
    stdout = capsys.readouterr().out
    assert 'train: 4 images' in stdout
    assert 'val: 2 images' in stdout
    coco = json.loads((out / 'annotations' / 'instances_val.json').read_text())
    assert len(coco['images']) == 2
    assert coco['images'][0]['width'] == 96
