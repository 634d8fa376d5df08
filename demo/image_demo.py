#!/usr/bin/env python
"""Image demo on mmdet's DetInferencer (see eca_mmdet/apis/demo.py).

    python demo/image_demo.py INPUTS CONFIG --weights CKPT [--out-dir DIR] \
        [--device cpu|cuda] [--pred-score-thr 0.3]

INPUTS: an image, a folder or a (quoted) glob. Writes DIR/vis/NAME and
DIR/preds/NAME.json (labels, label_names, scores, bboxes, RLE masks).
An unreadable image in a folder or glob is skipped with a ``warning:`` line
naming it; the others are processed and the exit status is 0. Bad input
(a single unreadable image, --batch-size < 1, a score threshold outside
[0, 1], a checkpoint that does not fit) is one ``error:`` line, status 1.
"""
import sys
import warnings
from pathlib import Path

warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.demo import image_demo_main  # noqa: E402

if __name__ == '__main__':
    sys.exit(image_demo_main())
