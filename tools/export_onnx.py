#!/usr/bin/env python
"""Export a detector to ONNX (single-stage: the head outputs of mmdet's
tensor mode; two-stage: the FPN features and RPN maps; or the backbone),
write the preprocessing it expects next to it (model.onnx ->
model.preprocess.json) and check it in onnxruntime against PyTorch (see
docs/onnx_export.md and eca_mmdet/apis/export.py).

    python tools/export_onnx.py configs/retinanet_ecanet50_1x.py CKPT --out retinanet.onnx
    python tools/export_onnx.py CONFIG --out m.onnx --shape 800 1344   # random weights
    python tools/export_onnx.py CONFIG CKPT --out backbone.onnx --backbone-only

Needs the onnx extra: pip install "eca-mmdet[onnx]".
"""

import sys
import warnings
from pathlib import Path

# mmengine imports pkg_resources, which warns on every run
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

# Allow running from a source checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eca_mmdet.apis.export import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
