#!/usr/bin/env python
"""A GIF of a training run: one frame per WORK_DIR/epoch_*.pth with the
predictions on IMAGE(s) and that epoch's val bbox/segm mAP from the log.

    python tools/progress_gif.py CONFIG WORK_DIR IMAGE... --out FILE.gif \
        [--fps 2] [--cell-size 256] [--pred-score-thr 0.3] \
        [--max-instances 10]
"""

import argparse
import os.path as osp
import sys
import warnings
from pathlib import Path

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.utils import ProgressBar  # noqa: E402

from eca_mmdet.apis import load_detector, load_weights, predict  # noqa: E402
from eca_mmdet.apis.common import (
    CliArgumentParser,
    load_config,  # noqa: E402
    run_cli,
)
from eca_mmdet.apis.inputs import expand_images  # noqa: E402
from eca_mmdet.engine import refuse_overwriting_inputs  # noqa: E402
from eca_mmdet.visualization import (  # noqa: E402
    MAX_INSTANCES,
    StableColorDetVisualizer,
    VisualizationError,
    check_score_thr,
    compose_frame,
    epoch_checkpoints,
    format_caption,
    read_image,
    read_val_metrics,
    write_gif,
)


def build_parser() -> argparse.ArgumentParser:
    p = CliArgumentParser(
        prog='tools/progress_gif.py',
        description='A GIF with one frame per epoch_*.pth of WORK_DIR: the '
        'predictions on IMAGE(s), captioned with the epoch and its val mAP.',
    )
    p.add_argument('config')
    p.add_argument('work_dir')
    p.add_argument(
        'images', nargs='+', metavar='IMAGE', help='image files or folders'
    )
    p.add_argument('--out', required=True, metavar='FILE.gif')
    p.add_argument('--fps', type=float, default=2.0)
    p.add_argument(
        '--cell-size',
        type=int,
        default=256,
        aliases=['--size'],
        help='each image is drawn at this many px (longer side) in a '
        'square cell (256)',
    )
    p.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        aliases=['--score-thr'],
        help='draw predictions scoring above this, in [0, 1] (0.3)',
    )
    p.add_argument(
        '--max-instances',
        type=int,
        default=MAX_INSTANCES,
        metavar='N',
        help='draw at most the N highest-scoring predictions per image; '
        f'0: all ({MAX_INSTANCES})',
    )
    p.add_argument('--cols', type=int, default=None)
    p.add_argument('--device', default='cpu')
    return p


def main(args: argparse.Namespace) -> int:
    check_score_thr(args.pred_score_thr, '--pred-score-thr')
    if args.max_instances < 0:
        raise VisualizationError(
            f'--max-instances must be >= 0 (0: all), got {args.max_instances}'
        )
    if not osp.isdir(args.work_dir):
        raise VisualizationError(f'work dir not found: {args.work_dir}')
    checkpoints = epoch_checkpoints(args.work_dir)
    if not checkpoints:
        raise VisualizationError(f'no epoch_*.pth in {args.work_dir}')
    cfg = load_config(args.config)
    paths = expand_images(args.images, allow_glob=True)
    refuse_overwriting_inputs(
        {'--out': args.out},
        {
            'image': paths,
            'config': args.config,
            'checkpoint': [c for _, c in checkpoints],
        },
    )
    images = [read_image(p) for p in paths]
    metrics = read_val_metrics(args.work_dir)
    # the first checkpoint's dataset_meta: one palette for all frames
    model = load_detector(cfg, checkpoints[0][1], device='cpu')
    visualizer = StableColorDetVisualizer(name='progress_gif').set_meta(
        model.dataset_meta
    )
    frames = []
    progress = ProgressBar(len(checkpoints))
    for epoch, ckpt_path in checkpoints:
        load_weights(model, ckpt_path)
        model.to(args.device).eval()
        samples = predict(model, paths)
        frames.append(
            compose_frame(
                visualizer,
                images,
                samples,
                format_caption(epoch, metrics.get(epoch)),
                size=args.cell_size,
                cols=args.cols,
                score_thr=args.pred_score_thr,
                max_instances=args.max_instances or None,
            )
        )
        model.cpu()
        progress.update()
    out = write_gif(frames, args.out, fps=args.fps)
    known = sum(1 for e, _ in checkpoints if e in metrics)
    print(
        f'\n{out}: {len(frames)} frames (epochs '
        f'{checkpoints[0][0]}-{checkpoints[-1][0]}), val mAP known for '
        f'{known}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, build_parser()))
