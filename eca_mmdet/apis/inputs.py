"""The inputs of the rendering tools: image paths from files, folders,
globs and dataset splits, and COCO ground truth per image file."""

import contextlib
import glob
import io
import os
import os.path as osp
from typing import Dict, List, Sequence

import numpy as np
import torch
from mmdet.registry import DATASETS
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from pycocotools.coco import COCO

from ..engine.errors import first_line
from ..visualization.render import IMG_EXTENSIONS, VisualizationError

__all__ = ['expand_images', 'load_coco_gt', 'split_images']


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMG_EXTENSIONS)


def _folder_images(folder: str) -> List[str]:
    return sorted(
        osp.join(folder, name)
        for name in os.listdir(folder)
        if _is_image(name) and osp.isfile(osp.join(folder, name))
    )


def expand_images(
    inputs: Sequence[str], cfg=None, allow_glob: bool = True
) -> List[str]:
    """Image paths from files, folders (their images, sorted), globs and,
    with ``cfg``, dataset split names (``val`` -> the images of
    ``cfg.val_dataloader.dataset``)."""
    paths: List[str] = []
    for item in inputs:
        if osp.isfile(item):
            paths.append(item)
        elif osp.isdir(item):
            found = _folder_images(item)
            if not found:
                raise VisualizationError(
                    f'no images in folder {item} ({", ".join(IMG_EXTENSIONS)})'
                )
            paths += found
        elif (
            cfg is not None
            and f'{item}_dataloader' in cfg
            and cfg.get(f'{item}_dataloader')
        ):
            paths += split_images(cfg, item)
        elif allow_glob and glob.has_magic(item):
            found = sorted(
                p for p in glob.glob(item) if osp.isfile(p) and _is_image(p)
            )
            if not found:
                raise VisualizationError(f'no images match {item}')
            paths += found
        else:
            what = 'image, folder, glob' if allow_glob else 'image, folder'
            splits = (
                ' or dataset split (train/val/test)' if cfg is not None else ''
            )
            raise VisualizationError(f'{item}: no such {what}{splits}')
    seen, unique = set(), []
    for path in paths:  # the same image twice (e.g. `val` and `data/val/`)
        key = osp.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def split_images(cfg, split: str) -> List[str]:
    """Image paths of the dataset of ``cfg.<split>_dataloader``."""
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    ds_cfg = cfg[f'{split}_dataloader']['dataset'].copy()
    ds_cfg['pipeline'] = []
    try:
        dataset = DATASETS.build(ds_cfg)
        dataset.full_init()
        paths = [
            dataset.get_data_info(i)['img_path'] for i in range(len(dataset))
        ]
    except Exception as e:  # noqa: BLE001 - missing files, bad json
        raise VisualizationError(
            f'cannot read the {split} dataset of the config: '
            f'{type(e).__name__}: {e}'
        ) from None
    if not paths:
        raise VisualizationError(f'the {split} dataset has no images')
    return paths


def load_coco_gt(
    ann_file: str, classes: Sequence[str]
) -> Dict[str, InstanceData]:
    """``{file basename: InstanceData(bboxes, labels, masks)}`` from a COCO
    json; categories map to ``classes`` by name (others and crowd regions
    are skipped); masks are decoded by pycocotools' ``annToMask``."""
    if not osp.isfile(ann_file):
        raise VisualizationError(f'ground-truth file not found: {ann_file}')
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
            coco = COCO(ann_file)
    except Exception as e:  # noqa: BLE001
        raise VisualizationError(
            f'cannot read COCO annotations {ann_file}: '
            f'{type(e).__name__}: {first_line(e)}'
        ) from None
    label_of = {
        cid: classes.index(cat['name'])
        for cid, cat in coco.cats.items()
        if cat['name'] in classes
    }
    out = {}
    for img_id, info in coco.imgs.items():
        h, w = int(info['height']), int(info['width'])
        anns = [
            a
            for a in coco.imgToAnns.get(img_id, [])
            if not a.get('iscrowd') and a.get('category_id') in label_of
        ]
        boxes = [
            [x, y, x + bw, y + bh]
            for x, y, bw, bh in (a['bbox'] for a in anns)
        ]
        masks = [
            coco.annToMask(a).astype(bool)
            if a.get('segmentation')
            else np.zeros((h, w), bool)
            for a in anns
        ]
        inst = InstanceData()
        inst.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        inst.labels = torch.tensor(
            [label_of[a['category_id']] for a in anns], dtype=torch.int64
        )
        inst.masks = torch.from_numpy(
            np.stack(masks) if masks else np.zeros((0, h, w), bool)
        )
        out[osp.basename(info['file_name'])] = inst
    return out
