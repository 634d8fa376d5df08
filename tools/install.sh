#!/usr/bin/env bash
# Create .venv in the repository root and install eca-mmdet with its stack:
# torch (2.13.0 CPU here; TORCH_SPEC overrides), mmcv 2.1.0 built from source
# against it (no wheel exists for recent torch), mmengine, mmdet 3.3.0 and
# this package in editable mode with its test extras. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=(.venv/bin/python -m pip)
step() { printf '\n==> %s\n' "$*"; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
step "torch (${TORCH_SPEC:=torch==2.13.0})"
"${PIP[@]}" install -q "$TORCH_SPEC"
# mmcv 2.1 / mmdet 3.3 predate numpy 2; opencv>=4.12 requires numpy 2.
step "build requirements: numpy<2, opencv<4.12, wheel, ninja"
"${PIP[@]}" install -q "numpy<2" "opencv-python<4.12" wheel ninja
if ! .venv/bin/python -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
  step "mmcv 2.1.0 from source with compiled ops: takes ~10 minutes on 2 cores the first time (pip caches the wheel)"
  # mmcv's setup.py needs setuptools<70; torch itself asks for >=77 (restored below).
  "${PIP[@]}" install -q "setuptools<70"
  MAX_JOBS=${MAX_JOBS:-2} "${PIP[@]}" install --no-build-isolation "mmcv==2.1.0"
fi
# mmengine needs pkg_resources, which setuptools>=81 no longer ships.
step "setuptools for torch and mmengine (>=77.0.3,<81)"
"${PIP[@]}" install -q "setuptools>=77.0.3,<81"
step "mmengine, mmdet 3.3.0, pycocotools and eca-mmdet (editable, with test extras)"
"${PIP[@]}" install -q "mmengine==0.10.7" "mmdet==3.3.0" pycocotools
"${PIP[@]}" install -q --no-build-isolation -e ".[tests]"
.venv/bin/python -c "import eca_mmdet, mmcv, mmdet, torch; print('eca-mmdet', eca_mmdet.__version__, '| torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__)"
step "done: .venv is ready"
