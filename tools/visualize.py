#!/usr/bin/env python
"""Draw a detector's predictions on images.

    python tools/visualize.py CONFIG CHECKPOINT INPUT... --out-dir DIR \
        [--pred-score-thr 0.3] [--gt ANN.json]

INPUT: image files, folders, globs, or a dataset split of the config (val).
Writes DIR/<image>.png (GT | prediction with --gt) and DIR/contact_sheet.png.
Bad input is one ``error: ...`` line and exit status 1.
"""

import argparse
import os.path as osp
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.structures import InstanceData  # noqa: E402
from mmengine.utils import ProgressBar  # noqa: E402

from eca_mmdet.apis import load_detector, predict  # noqa: E402
from eca_mmdet.apis.common import (
    CliArgumentParser,
    load_config,  # noqa: E402
    run_cli,
)
from eca_mmdet.apis.inputs import expand_images, load_coco_gt  # noqa: E402
from eca_mmdet.engine import refuse_overwriting_inputs  # noqa: E402
from eca_mmdet.visualization import (
    CONTACT_SHEET,  # noqa: E402
    StableColorDetVisualizer,
    check_score_thr,
    read_image,
    rendering_name,
    write_contact_sheet,
)


def build_parser() -> argparse.ArgumentParser:
    p = CliArgumentParser(
        prog='tools/visualize.py',
        description="Draw a detector's predictions (boxes, masks, class "
        'names, scores) on images; optional GT side by side; a contact '
        'sheet of all renderings.',
    )
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument(
        'inputs',
        nargs='+',
        metavar='INPUT',
        help='image files, folders, globs or a dataset split of '
        'the config (train/val/test)',
    )
    p.add_argument('--out-dir', required=True)
    p.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        aliases=['--score-thr'],
        help='draw predictions scoring above this, in [0, 1] (0.3)',
    )
    p.add_argument(
        '--gt',
        metavar='ANN.json',
        help='COCO annotations: draw the ground truth on the '
        'left (images matched by file name)',
    )
    p.add_argument('--device', default='cpu')
    p.add_argument(
        '--cell-size',
        type=int,
        default=256,
        help='height of a contact-sheet cell',
    )
    return p


def main(args: argparse.Namespace) -> int:
    check_score_thr(args.pred_score_thr, '--pred-score-thr')
    cfg = load_config(args.config)  # dataset splits name images
    images = expand_images(args.inputs, cfg=cfg, allow_glob=True)
    for path in images:  # fail before the model is loaded
        read_image(path)
    refuse_overwriting_inputs(
        (),
        {'image': images, 'annotation file': args.gt},
        output_dirs={'--out-dir': args.out_dir},
    )
    model = load_detector(cfg, args.checkpoint, device=args.device)
    meta = model.dataset_meta
    gt = (
        load_coco_gt(args.gt, tuple(meta.get('classes') or ()))
        if args.gt
        else None
    )
    visualizer = StableColorDetVisualizer(name='visualize').set_meta(meta)
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
                    labels=np.zeros((0,), np.int64),
                )
            sample.gt_instances = inst
        out_file = osp.join(args.out_dir, f'{rendering_name(path, used)}.png')
        visualizer.add_datasample(
            osp.basename(path),
            image,
            sample,
            draw_gt=gt is not None,
            pred_score_thr=args.pred_score_thr,
            out_file=out_file,
        )
        written.append(out_file)
        progress.update()
    sheet = write_contact_sheet(
        written,
        osp.join(args.out_dir, f'{CONTACT_SHEET}.png'),
        cell_size=args.cell_size,
    )
    print(
        f'\n{len(written)} renderings in {args.out_dir}, contact sheet {sheet}'
    )
    if no_gt:
        print(
            f'warning: {len(no_gt)} image(s) not in {args.gt} (empty GT '
            f'panel): {", ".join(no_gt[:5])}',
            file=sys.stderr,
        )
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, build_parser()))
