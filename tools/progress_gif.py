#!/usr/bin/env python
"""A GIF of a training run: one frame per WORK_DIR/epoch_*.pth with the
predictions on IMAGE(s) and that epoch's val bbox/segm mAP from the log.

    python tools/progress_gif.py CONFIG WORK_DIR IMAGE... --out FILE.gif \
        [--fps 2] [--size 256] [--score-thr 0.3]
"""
import sys
import warnings
from pathlib import Path

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.visualization.cli import progress_gif_main  # noqa: E402

if __name__ == '__main__':
    sys.exit(progress_gif_main())
