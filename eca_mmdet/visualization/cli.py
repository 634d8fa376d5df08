"""Command-line entry points behind ``tools/visualize.py`` and
``tools/progress_gif.py``.

Each ``*_main(argv)`` returns the exit status: 0, or 1 after one
``error: ...`` line on stderr for bad input (no traceback; set
``ECA_MMDET_DEBUG=1`` to get one).
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..engine import enable_stack_fixes
from ..engine.errors import EcaMmdetError
from .render import IMG_EXTENSIONS, VisualizationError

__all__ = [
    'expand_images', 'load_coco_gt', 'progress_gif_main', 'run_main',
    'visualize_main'
]

DEBUG_ENV = 'ECA_MMDET_DEBUG'


class _Parser(argparse.ArgumentParser):
    """argparse exiting with status 1 (like every other input error)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f'{self.prog}: error: {message}\n')


def run_main(main: Callable[[argparse.Namespace], Optional[int]],
             parser: argparse.ArgumentParser,
             argv: Optional[Sequence[str]] = None) -> int:
    """Parse, turn on the stack fixes (weights-only checkpoint loading,
    see :func:`~eca_mmdet.engine.enable_stack_fixes`), run, and turn our
    errors into one ``error:`` line + status 1."""
    args = parser.parse_args(argv)
    enable_stack_fixes()
    try:
        return main(args) or 0
    except EcaMmdetError as e:
        if os.environ.get(DEBUG_ENV):
            raise
        text = ' '.join(str(e).split()) or type(e).__name__
        print(f'error: {text}', file=sys.stderr, flush=True)
        return 1


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMG_EXTENSIONS)


def _folder_images(folder: str) -> List[str]:
    return sorted(
        osp.join(folder, name) for name in os.listdir(folder)
        if _is_image(name) and osp.isfile(osp.join(folder, name)))


def expand_images(inputs: Sequence[str], cfg=None,
                  allow_glob: bool = True) -> List[str]:
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
                raise VisualizationError(f'no images in folder {item} '
                                         f'({", ".join(IMG_EXTENSIONS)})')
            paths += found
        elif cfg is not None and f'{item}_dataloader' in cfg and \
                cfg.get(f'{item}_dataloader'):
            paths += split_images(cfg, item)
        elif allow_glob and glob.has_magic(item):
            found = sorted(p for p in glob.glob(item)
                           if osp.isfile(p) and _is_image(p))
            if not found:
                raise VisualizationError(f'no images match {item}')
            paths += found
        else:
            what = 'image, folder, glob' if allow_glob else 'image, folder'
            splits = ' or dataset split (train/val/test)' if cfg is not None \
                else ''
            raise VisualizationError(
                f'{item}: no such {what}{splits}')
    seen, unique = set(), []
    for path in paths:  # the same image twice (e.g. `val` and `data/val/`)
        key = osp.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def split_images(cfg, split: str) -> List[str]:
    """Image paths of the dataset of ``cfg.<split>_dataloader``."""
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    ds_cfg = cfg[f'{split}_dataloader']['dataset'].copy()
    ds_cfg['pipeline'] = []
    try:
        dataset = DATASETS.build(ds_cfg)
        dataset.full_init()
        paths = [dataset.get_data_info(i)['img_path']
                 for i in range(len(dataset))]
    except Exception as e:  # noqa: BLE001 - missing files, bad json
        raise VisualizationError(
            f'cannot read the {split} dataset of the config: '
            f'{type(e).__name__}: {e}') from None
    if not paths:
        raise VisualizationError(f'the {split} dataset has no images')
    return paths


def load_coco_gt(ann_file: str, classes: Sequence[str]) -> Dict[str, object]:
    """``{file basename: InstanceData(bboxes, labels, masks)}`` from a COCO
    json; categories map to ``classes`` by name (others and crowd regions
    are skipped)."""
    import torch
    from mmengine.structures import InstanceData
    from pycocotools import mask as mask_utils
    if not osp.isfile(ann_file):
        raise VisualizationError(f'ground-truth file not found: {ann_file}')
    try:
        with open(ann_file) as f:
            coco = json.load(f)
        images = {img['id']: img for img in coco['images']}
        cat_names = {c['id']: c['name'] for c in coco.get('categories', [])}
        annotations = coco.get('annotations', [])
    except Exception as e:  # noqa: BLE001
        raise VisualizationError(
            f'cannot read COCO annotations {ann_file}: '
            f'{type(e).__name__}: {e}') from None
    label_of = {cid: classes.index(name) for cid, name in cat_names.items()
                if name in classes}
    per_image: Dict[int, list] = {i: [] for i in images}
    for ann in annotations:
        if ann.get('iscrowd') or ann.get('category_id') not in label_of:
            continue
        if ann.get('image_id') in per_image:
            per_image[ann['image_id']].append(ann)
    out = {}
    for img_id, anns in per_image.items():
        info = images[img_id]
        h, w = int(info['height']), int(info['width'])
        boxes, labels, masks = [], [], []
        for ann in anns:
            x, y, bw, bh = ann['bbox']
            boxes.append([x, y, x + bw, y + bh])
            labels.append(label_of[ann['category_id']])
            seg = ann.get('segmentation')
            if isinstance(seg, list) and seg:
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg, dict) and isinstance(seg.get('counts'),
                                                      list):
                rle = mask_utils.frPyObjects(seg, h, w)
            elif isinstance(seg, dict):
                rle = seg
            else:
                rle = None
            masks.append(
                mask_utils.decode(rle).astype(bool) if rle is not None else
                np.zeros((h, w), bool))
        inst = InstanceData()
        inst.bboxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        inst.labels = torch.tensor(labels, dtype=torch.int64)
        inst.masks = torch.from_numpy(
            np.stack(masks) if masks else np.zeros((0, h, w), bool))
        out[osp.basename(info['file_name'])] = inst
    return out


# ----------------------------------------------------------------------------
# tools/visualize.py
# ----------------------------------------------------------------------------
def visualize_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog='tools/visualize.py',
        description='Draw a detector\'s predictions (boxes, masks, class '
        'names, scores) on images; optional GT side by side; a contact '
        'sheet of all renderings.')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('inputs', nargs='+', metavar='INPUT',
                   help='image files, folders, globs or a dataset split of '
                   'the config (train/val/test)')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--score-thr', type=float, default=0.3)
    p.add_argument('--gt', metavar='ANN.json',
                   help='COCO annotations: draw the ground truth on the '
                   'left (images matched by file name)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cell-size', type=int, default=256,
                   help='height of a contact-sheet cell')
    return p


def _visualize(args: argparse.Namespace) -> int:
    from mmengine.structures import InstanceData
    from mmengine.utils import ProgressBar

    from .render import (CONTACT_SHEET, DetRenderer, check_score_thr,
                         load_config, load_detector, predict, read_image,
                         rendering_name, save_image, write_contact_sheet)
    check_score_thr(args.score_thr, '--score-thr')
    cfg = load_config(args.config)
    images = expand_images(args.inputs, cfg=cfg, allow_glob=True)
    for path in images:  # fail before the model is loaded
        read_image(path)
    model = load_detector(cfg, args.checkpoint, device=args.device)
    meta = model.dataset_meta
    gt = load_coco_gt(args.gt, tuple(meta.get('classes') or ())) \
        if args.gt else None
    renderer = DetRenderer(meta, score_thr=args.score_thr)
    written, used, no_gt = [], set(), []
    progress = ProgressBar(len(images))
    for path in images:
        image = read_image(path)
        sample = predict(model, [path])[0]
        if gt is not None:
            inst = gt.get(osp.basename(path))
            if inst is None:
                no_gt.append(osp.basename(path))
                inst = InstanceData(
                    bboxes=np.zeros((0, 4), np.float32),
                    labels=np.zeros((0, ), np.int64))
            sample.gt_instances = inst
        drawn = renderer.render(image, sample, draw_gt=gt is not None)
        name = rendering_name(path, used)
        written.append(
            save_image(drawn, osp.join(args.out_dir, f'{name}.png')))
        progress.update()
    sheet = write_contact_sheet(
        written, osp.join(args.out_dir, f'{CONTACT_SHEET}.png'),
        cell_size=args.cell_size)
    print(f'\n{len(written)} renderings in {args.out_dir}, contact sheet '
          f'{sheet}')
    if no_gt:
        print(f'warning: {len(no_gt)} image(s) not in {args.gt} (empty GT '
              f'panel): {", ".join(no_gt[:5])}', file=sys.stderr)
    return 0


def visualize_main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_visualize, visualize_parser(), argv)


# ----------------------------------------------------------------------------
# tools/progress_gif.py
# ----------------------------------------------------------------------------
def progress_gif_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog='tools/progress_gif.py',
        description='A GIF with one frame per epoch_*.pth of WORK_DIR: the '
        'predictions on IMAGE(s), captioned with the epoch and its val mAP.')
    p.add_argument('config')
    p.add_argument('work_dir')
    p.add_argument('images', nargs='+', metavar='IMAGE',
                   help='image files or folders')
    p.add_argument('--out', required=True, metavar='FILE.gif')
    p.add_argument('--fps', type=float, default=2.0)
    p.add_argument('--size', type=int, default=256,
                   help='each image is drawn at SIZE px (longer side)')
    p.add_argument('--score-thr', type=float, default=0.3)
    p.add_argument('--cols', type=int, default=None)
    p.add_argument('--device', default='cpu')
    return p


def _progress_gif(args: argparse.Namespace) -> int:
    from mmengine.utils import ProgressBar

    from .progress import (compose_frame, epoch_checkpoints, format_caption,
                           read_val_metrics, write_gif)
    from .render import (DetRenderer, build_detector, check_score_thr,
                         load_config, load_weights, predict, read_image)
    check_score_thr(args.score_thr, '--score-thr')
    if not osp.isdir(args.work_dir):
        raise VisualizationError(f'work dir not found: {args.work_dir}')
    checkpoints = epoch_checkpoints(args.work_dir)
    if not checkpoints:
        raise VisualizationError(f'no epoch_*.pth in {args.work_dir}')
    cfg = load_config(args.config)
    paths = expand_images(args.images, allow_glob=True)
    images = [read_image(p) for p in paths]
    metrics = read_val_metrics(args.work_dir)
    model = build_detector(cfg, device='cpu')
    renderer: Optional[DetRenderer] = None
    frames = []
    progress = ProgressBar(len(checkpoints))
    for epoch, ckpt_path in checkpoints:
        ckpt = load_weights(model, ckpt_path)
        model.to(args.device).eval()
        if renderer is None:  # one palette for all frames
            meta = (ckpt.get('meta') or {}).get('dataset_meta')
            meta = {k.lower(): v for k, v in meta.items()} if meta else \
                model.dataset_meta
            renderer = DetRenderer(meta, score_thr=args.score_thr)
        samples = predict(model, paths)
        frames.append(
            compose_frame(renderer, images, samples,
                          format_caption(epoch, metrics.get(epoch)),
                          size=args.size, cols=args.cols))
        model.cpu()
        progress.update()
    out = write_gif(frames, args.out, fps=args.fps)
    known = sum(1 for e, _ in checkpoints if e in metrics)
    print(f'\n{out}: {len(frames)} frames (epochs '
          f'{checkpoints[0][0]}-{checkpoints[-1][0]}), val mAP known for '
          f'{known}')
    return 0


def progress_gif_main(argv: Optional[Sequence[str]] = None) -> int:
    return run_main(_progress_gif, progress_gif_parser(), argv)
