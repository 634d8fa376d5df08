#!/usr/bin/env python
"""Convert ECA-ResNet ImageNet weights (official ECANet ``.pth.tar`` or timm
``.pth``/``.safetensors``) to an ECAResNet checkpoint for MMDetection.

    python tools/convert_weights.py eca_resnet50_k3557.pth.tar checkpoints/eca_r50.pth

Prints the detected layout and the backbone config to paste into a config.
Exits 1 with a one-line ``error: ...`` when the source is missing, empty, not
a checkpoint, a pickle needing globals outside the allow-list (refused, never
run) or not convertible, or when DST is a directory or SRC itself. DST is
written atomically (a temp file renamed into place).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.common import CliArgumentParser, run_cli  # noqa: E402
from eca_mmdet.converters import convert_file  # noqa: E402
from eca_mmdet.engine.errors import EcaMmdetError  # noqa: E402


def format_cfg(cfg: dict, checkpoint: str) -> str:
    """``backbone=dict(...)`` with the Pretrained init_cfg, ready to paste."""
    items = [f'{k}={v!r}' for k, v in cfg.items()]
    items.append(
        f"init_cfg=dict(type='Pretrained', checkpoint={checkpoint!r})"
    )
    return 'backbone=dict(\n    ' + ',\n    '.join(items) + ')'


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    ap = CliArgumentParser(
        prog='tools/convert_weights.py',
        description=__doc__.split('\n\n')[0],
    )
    ap.add_argument('src', help='official .pth.tar or timm .pth/.safetensors')
    ap.add_argument('dst', help='output ECAResNet checkpoint (.pth)')
    return ap


def convert(args: argparse.Namespace) -> int:
    """Convert ``args.src`` into ``args.dst`` and print the config."""
    try:
        meta = convert_file(args.src, args.dst)
    except OSError as e:  # reading SRC or writing DST
        raise EcaMmdetError(str(e)) from None
    arch = f', arch {meta["arch"]}' if meta.get('arch') else ''
    print(f'detected layout: {meta["layout"]}{arch}')
    print(f'wrote {args.dst}')
    print('backbone config:')
    print(format_cfg(meta['backbone'], args.dst))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status (1 after one ``error:`` line
    for bad input)."""
    return run_cli(convert, build_parser(), argv)


if __name__ == '__main__':
    sys.exit(main())
