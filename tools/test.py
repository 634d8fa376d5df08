#!/usr/bin/env python
"""Test a checkpoint: COCO bbox + segm mAP (see eca_mmdet/apis/test.py).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR]

writes DIR/metrics.json and DIR/results.{bbox,segm}.json.
"""

import sys
import warnings
from pathlib import Path

# mmengine imports pkg_resources, which warns on every run; keep stderr for
# what matters
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

# Allow running from a source checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.test import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
