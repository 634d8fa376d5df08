#!/usr/bin/env python
"""See what ECA learned: record the gate of every ECA block on images and
plot it per class.

    python tools/eca_attention.py CONFIG CHECKPOINT \
        (--images IMG... | --ann ANN.json [--img-dir DIR]) \
        [--max-images N] [--blocks layer4.1 ...] --out-dir DIR
    python tools/eca_attention.py CONVERTED.pth --backbone-only \
        --images IMG... --out-dir DIR

Writes DIR/gates.npz (block -> images x channels, image ids/files, classes
per image), class_mean_gates.png, class_offsets.png, stage_histograms.png
and stage_stats.json. Classes come from --ann, else from the detector's
predictions (--pred-score-thr). The images of --ann are taken from where the
config's dataloader reading that file takes them (data_root +
data_prefix.img), or --img-dir. When the gates carry no information (all
0.5, or none changing by 1e-6 across the images) one ``warning: ...`` line
says so, as do stage_stats.json and the figures' titles; when they all stay
within 0.001 of 0.5, one ``note: ...`` line.
Bad input is one ``error: ...`` line, exit 1.
"""

import argparse
import sys
import warnings
from pathlib import Path

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.attention import explore_attention  # noqa: E402
from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.visualization.attention import AttentionError  # noqa: E402
from eca_mmdet.visualization.render import check_score_thr  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = CliArgumentParser(
        prog='tools/eca_attention.py',
        description='Record the ECA gates of a detector or an ECAResNet '
        'backbone on images; write gates.npz, per-class mean gates, a '
        'blocks x classes heat map and per-stage histograms.',
    )
    p.add_argument(
        'models',
        nargs='+',
        metavar='CONFIG CHECKPOINT',
        help='a config and a checkpoint; with --backbone-only '
        'the config may be left out (converted weights name '
        'their backbone)',
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        '--images',
        nargs='+',
        metavar='IMG',
        help='image files, folders or globs',
    )
    source.add_argument(
        '--ann',
        metavar='ANN.json',
        help="COCO annotations: their images, and each image's classes",
    )
    p.add_argument(
        '--img-dir',
        help="images of --ann (default: where the config's dataloader "
        'reading --ann takes them from, data_root + data_prefix.img; '
        'else <root>/<split> for <root>/annotations/instances_<split>.json, '
        "else the annotation file's folder)",
    )
    p.add_argument(
        '--max-images', type=int, help='the first N images (by id with --ann)'
    )
    p.add_argument(
        '--out-dir', required=True, aliases=['--out'], help='output folder'
    )
    p.add_argument(
        '--backbone-only',
        action='store_true',
        help='run the ECAResNet backbone alone on '
        'ImageNet-normalised images (converted weights)',
    )
    p.add_argument(
        '--img-size',
        type=int,
        default=224,
        help='--backbone-only: shorter image side (224)',
    )
    p.add_argument(
        '--pred-score-thr',
        type=float,
        default=0.3,
        aliases=['--score-thr'],
        help="without --ann: an image's classes are its "
        'predictions scoring at least this (0.3)',
    )
    p.add_argument(
        '--blocks',
        nargs='+',
        metavar='BLOCK',
        help='blocks of the per-class line figure (default: the '
        'last of each stage, e.g. layer4.1)',
    )
    p.add_argument('--device', default='cpu')
    return p


def main(args: argparse.Namespace) -> int:
    if len(args.models) > 2 or (
        len(args.models) == 1 and not args.backbone_only
    ):
        raise AttentionError(
            'expected CONFIG CHECKPOINT (or CHECKPOINT alone with '
            f'--backbone-only), got {len(args.models)} argument(s)'
        )
    config, checkpoint = (
        (None, *args.models) if len(args.models) == 1 else args.models
    )
    check_score_thr(args.pred_score_thr, '--pred-score-thr')
    if args.img_size < 16:
        raise AttentionError(f'--img-size must be >= 16, got {args.img_size}')
    summary = explore_attention(
        config,
        checkpoint,
        args.out_dir,
        images=args.images or (),
        ann_file=args.ann,
        img_dir=args.img_dir,
        max_images=args.max_images,
        backbone_only=args.backbone_only,
        score_thr=args.pred_score_thr,
        blocks=args.blocks,
        img_size=args.img_size,
        device=args.device,
    )
    print(
        f'{summary["images"]} images, classes: '
        f'{", ".join(summary["classes"]) or "none"}'
    )
    print('stage   gate mean  std     between classes  by chance (95%)  p')
    for stage, s in summary['stats'].items():
        print(
            f'{stage:7} {s["mean"]:.3f}      {s["std"]:.4f}  '
            f'{s["between"]:.5f}          '
            f'{s["between_chance_mean"]:.5f} '
            f'({s["between_chance_q95"]:.5f})  '
            f'{s["between_chance_p"]:.2f}'
        )
    for path in summary['paths'].values():
        print(f'wrote {path}')
    if summary['no_information']:
        print(
            'warning: the gates carry no information: '
            f'{summary["no_information"]}; the figures (written all the '
            'same) show no effect of the classes or the images',
            file=sys.stderr,
        )
    elif summary['barely_moving']:
        print(
            f'note: the gates barely move: {summary["barely_moving"]}; the '
            'differences the figures show are at most that large',
            file=sys.stderr,
        )
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, build_parser()))
