#!/usr/bin/env python
"""Train a detector with mmengine's Runner (see eca_mmdet/apis/train.py).

python tools/train.py configs/shapes/mask_rcnn_ecaresnet18_shapes.py
python tools/train.py CONFIG --resume            # continue the work dir
python tools/train.py CONFIG --cfg-options model.backbone.init_cfg=None
python tools/train.py CONFIG --check             # only check data/ckpts
tools/dist_train.sh CONFIG 2                     # 2 processes (CPU: gloo)
"""

import sys
import warnings
from pathlib import Path

# mmengine imports pkg_resources, which warns on every run; keep stderr for
# what matters
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

# Allow running from a source checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.train import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
