#!/usr/bin/env python
"""Plot training curves (losses, learning rate, validation mAP per epoch)
from the mmengine logs of one or more work dirs, overlaid for comparison.

    python tools/plot_curves.py WORK_DIR [WORK_DIR ...] --out curves.png \
        [--labels ECA plain] [--val-keys '*mAP' 'coco/bbox_mAP_50']
"""

import argparse
import sys
import warnings
from pathlib import Path

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.engine import (  # noqa: E402
    check_output_location,
    refuse_overwriting_inputs,
)
from eca_mmdet.visualization.curves import (
    DEFAULT_VAL_KEYS,  # noqa: E402
    CurvesError,
    plot_curves,
    read_run_curves,
)


def build_parser() -> argparse.ArgumentParser:
    parser = CliArgumentParser(
        prog='tools/plot_curves.py',
        description='Plot losses, lr and validation metrics per epoch of '
        'one or more training runs.',
    )
    parser.add_argument(
        'work_dirs',
        nargs='+',
        metavar='WORK_DIR',
        help='--work-dir of a tools/train.py run',
    )
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument(
        '--labels',
        nargs='+',
        help='legend names, one per WORK_DIR (default: the folder names)',
    )
    parser.add_argument(
        '--val-keys',
        nargs='+',
        default=DEFAULT_VAL_KEYS,
        metavar='PATTERN',
        help='validation metrics to draw (fnmatch patterns; '
        "default '*mAP' 'eca/*_between': coco/bbox_mAP, "
        'coco/segm_mAP and, from EcaGateStatsHook, the ECA '
        "gates' distance between classes per stage; "
        "'eca/*' for all gate statistics)",
    )
    parser.add_argument('--title', help='figure title')
    return parser


def main(args: argparse.Namespace) -> int:
    labels = args.labels or [None] * len(args.work_dirs)
    if len(labels) != len(args.work_dirs):
        raise CurvesError(
            f'--labels: {len(labels)} label(s) for '
            f'{len(args.work_dirs)} work dir(s)'
        )
    check_output_location('--out', args.out, is_dir=False)
    runs = [
        read_run_curves(w, label) for w, label in zip(args.work_dirs, labels)
    ]
    refuse_overwriting_inputs(
        {'--out': args.out}, {'log': [f for r in runs for f in r.files]}
    )
    for run in runs:
        for note in run.notes:
            print(f'warning: {note}', file=sys.stderr)
    panels = plot_curves(runs, args.out, args.val_keys, args.title)
    print(f'{args.out}: {", ".join(panels)} for {len(runs)} run(s)')
    return 0


if __name__ == '__main__':
    sys.exit(run_cli(main, build_parser()))
