#!/usr/bin/env python
"""Image demo: a detector's predictions on images, drawn and saved as JSON
(mmdet's demo output layout; see eca_mmdet/apis/demo.py).

    python demo/image_demo.py INPUTS CONFIG --weights CKPT [--out-dir DIR] \
        [--device cpu|cuda] [--pred-score-thr 0.3]

INPUTS: an image, a folder or a (quoted) glob. Writes DIR/vis/NAME and
DIR/preds/NAME.json (labels, label_names, scores, bboxes, RLE masks).
An unreadable image in a folder or glob is skipped with a ``warning:`` line
naming it; the others are processed and the exit status is 0. Bad input
(a single unreadable image, --batch-size < 1, a score threshold outside
[0, 1], a checkpoint that does not fit) is one ``error:`` line, status 1.
"""

import argparse
import os.path as osp
import sys
import warnings
from pathlib import Path

import torch

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis import load_detector  # noqa: E402
from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.apis.demo import (  # noqa: E402
    MAX_IMAGE_PIXELS,
    readable_images,
    run_demo,
)
from eca_mmdet.engine import refuse_overwriting_inputs  # noqa: E402
from eca_mmdet.visualization import (
    VisualizationError,  # noqa: E402
    check_score_thr,
)


def build_parser() -> argparse.ArgumentParser:
    p = CliArgumentParser(
        prog='demo/image_demo.py',
        description='Detect objects in images with a config and a '
        'checkpoint; writes OUT_DIR/vis/NAME and OUT_DIR/preds/NAME.json. '
        'Unreadable images among several are skipped with a warning line '
        '(exit status 0).',
    )
    p.add_argument(
        'inputs',
        metavar='INPUTS',
        help='an image file, a folder of images or a glob (quote it)',
    )
    p.add_argument('config')
    p.add_argument('--weights', required=True, metavar='CKPT')
    p.add_argument('--out-dir', default='outputs')
    p.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    p.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        help='draw predictions scoring above this, in [0, 1] '
        '(the JSON has all of them)',
    )
    p.add_argument('--batch-size', type=int, default=1, help='>= 1')
    p.add_argument(
        '--max-pixels',
        type=int,
        default=MAX_IMAGE_PIXELS,
        help='skip images of more pixels (width x height) with a warning '
        f'line; default {MAX_IMAGE_PIXELS} (mmdet pastes every predicted '
        'mask at the full image size: about 100 bytes per pixel)',
    )
    p.add_argument(
        '--no-progress', action='store_true', help='no progress bar'
    )
    return p


def main(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise VisualizationError(
            f'--batch-size must be at least 1, got {args.batch_size}'
        )
    check_score_thr(args.pred_score_thr, '--pred-score-thr')
    images, skipped = readable_images(args.inputs, args.max_pixels)
    if not osp.isfile(args.weights):
        raise VisualizationError(f'checkpoint not found: {args.weights}')
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        raise VisualizationError(
            f'--device {args.device}: CUDA is not available '
            '(torch.cuda.is_available() is False); use '
            '--device cpu'
        )
    refuse_overwriting_inputs(  # outputs are named after the images
        (),
        {'image': images},
        output_dirs={
            '--out-dir': [
                osp.join(args.out_dir, 'vis'),
                osp.join(args.out_dir, 'preds'),
            ]
        },
    )
    model = load_detector(args.config, args.weights, device=args.device)
    run_demo(
        model,
        images,
        args.out_dir,
        pred_score_thr=args.pred_score_thr,
        batch_size=args.batch_size,
        show_progress=not args.no_progress,
    )
    print(
        f'{len(images)} image(s): renderings in '
        f'{osp.join(args.out_dir, "vis")}, predictions in '
        f'{osp.join(args.out_dir, "preds")}'
    )
    if skipped:  # again at the end, where it is seen
        print(
            f'warning: skipped {len(skipped)} unreadable image(s) (no '
            f'outputs): {"; ".join(skipped)}',
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, build_parser()))
