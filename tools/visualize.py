#!/usr/bin/env python
"""Draw a detector's predictions on images (see eca_mmdet/visualization).

    python tools/visualize.py CONFIG CHECKPOINT INPUT... --out-dir DIR \
        [--score-thr 0.3] [--gt ANN.json]

INPUT: image files, folders, globs, or a dataset split of the config (val).
Writes DIR/<image>.png (GT | prediction with --gt) and DIR/contact_sheet.png.
"""
import sys
import warnings
from pathlib import Path

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.visualization.cli import visualize_main  # noqa: E402

if __name__ == '__main__':
    sys.exit(visualize_main())
