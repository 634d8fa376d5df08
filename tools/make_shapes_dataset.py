#!/usr/bin/env python
"""Generate the synthetic COCO-format "shapes" instance-segmentation dataset.

Example::

    python tools/make_shapes_dataset.py data/shapes --train 400 --val 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Allow running from a source checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.datasets.shapes import (  # noqa: E402
    CATEGORIES,
    make_shapes_dataset,
)
from eca_mmdet.engine.errors import EcaMmdetError  # noqa: E402

MIN_IMG_SIZE = 48  # what make_shapes_dataset accepts


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = CliArgumentParser(
        prog='tools/make_shapes_dataset.py',
        description=__doc__.splitlines()[0],
    )
    parser.add_argument('out', type=Path, help='output directory')
    parser.add_argument(
        '--train',
        type=int,
        default=400,
        help='number of training images (default: 400)',
    )
    parser.add_argument(
        '--val',
        type=int,
        default=100,
        help='number of validation images (default: 100)',
    )
    parser.add_argument(
        '--seed', type=int, default=0, help='random seed (default: 0)'
    )
    parser.add_argument(
        '--img-size',
        type=int,
        default=128,
        aliases=['--size'],
        help='image side in pixels (default: 128)',
    )
    return parser


def generate(args: argparse.Namespace) -> int:
    """Generate the dataset and print a summary of what was written."""
    if args.img_size < MIN_IMG_SIZE:
        raise EcaMmdetError(
            f'--img-size must be at least {MIN_IMG_SIZE}, got {args.img_size}'
        )
    for option in ('train', 'val', 'seed'):
        if getattr(args, option) < 0:
            raise EcaMmdetError(
                f'--{option} must be >= 0, got {getattr(args, option)}'
            )
    info = make_shapes_dataset(
        args.out,
        num_train=args.train,
        num_val=args.val,
        seed=args.seed,
        size=args.img_size,
    )
    classes = ', '.join(f'{c["id"]}:{c["name"]}' for c in CATEGORIES)
    print(
        f'shapes dataset in {info["root"]} (seed {args.seed}; '
        f'categories {classes})'
    )
    for split in ('train', 'val'):
        s = info[split]
        print(
            f'  {split}: {s["num_images"]} images in {s["img_dir"]}, '
            f'{s["num_annotations"]} annotations in {s["ann_file"]}'
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 after one ``error:`` line
    for bad input)."""
    return run_cli(generate, build_parser(), argv)


if __name__ == '__main__':
    sys.exit(main())
