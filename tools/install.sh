#!/usr/bin/env bash
# Create .venv in the repository root and install eca-mmdet with its stack:
# torch (2.13.0 CPU here; TORCH_SPEC overrides), mmcv 2.1.0 built from source
# against it (no wheel exists for recent torch), mmengine, mmdet 3.3.0 and
# this package in editable mode with its test extras (pytest, onnx,
# onnxruntime). Safe to re-run.
#
# GPU build (not possible on a CPU-only machine; untested here): install a
# CUDA build of torch (TORCH_SPEC, plus PIP_EXTRA_INDEX_URL pointing at the
# pytorch.org index of your CUDA version), have nvcc of the same CUDA major
# version on PATH, and run
#   FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="8.0;8.6" bash tools/install.sh
# FORCE_CUDA=1 makes mmcv compile its ops with CUDA even where no GPU is
# visible at build time (e.g. in a container build); TORCH_CUDA_ARCH_LIST
# lists the compute capabilities to compile for (yours:
# python -c "import torch; print(torch.cuda.get_device_capability())"),
# fewer means a faster build. MAX_JOBS (default: the core count) bounds the
# parallel nvcc/c++ jobs; each can take 1-2 GB of memory, so lower it on a
# machine with many cores and little memory. With FORCE_CUDA=1 an installed
# mmcv without CUDA ops is rebuilt, bypassing pip's cached CPU wheel.
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
# mmcv's ops report the CUDA they were compiled with ('not available': CPU).
MMCV_CUDA="from mmcv.ops import get_compiling_cuda_version as v"
MMCV_OK="import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'"
if [ "${FORCE_CUDA:-0}" = 1 ]; then
  MMCV_OK="$MMCV_OK; $MMCV_CUDA; assert v() != 'not available'"  # rebuild
fi
if ! .venv/bin/python -c "$MMCV_OK" >/dev/null 2>&1; then
  step "mmcv 2.1.0 from source with compiled ops: takes ~10 minutes on 2 cores the first time (pip caches the wheel)"
  # mmcv's setup.py needs setuptools<70; torch itself asks for >=77 (restored below).
  "${PIP[@]}" install -q "setuptools<70"
  REBUILD=()
  if [ "${FORCE_CUDA:-0}" = 1 ]; then
    REBUILD=(--no-cache-dir --force-reinstall --no-deps)
  fi
  MAX_JOBS=${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)} \
    "${PIP[@]}" install --no-build-isolation ${REBUILD[@]+"${REBUILD[@]}"} "mmcv==2.1.0"
fi
# mmengine needs pkg_resources, which setuptools>=81 no longer ships.
step "setuptools for torch and mmengine (>=77.0.3,<81)"
"${PIP[@]}" install -q "setuptools>=77.0.3,<81"
step "mmengine, mmdet 3.3.0, pycocotools and eca-mmdet (editable, with test extras)"
"${PIP[@]}" install -q "mmengine==0.10.7" "mmdet==3.3.0" pycocotools
"${PIP[@]}" install -q --no-build-isolation -e ".[tests]"
.venv/bin/python -c "import eca_mmdet, mmcv, mmdet, torch; print('eca-mmdet', eca_mmdet.__version__, '| torch', torch.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__)"
.venv/bin/python -c "import torch; $MMCV_CUDA; print('mmcv ops built with CUDA:', v(), '| torch CUDA:', torch.version.cuda, '| GPU visible:', torch.cuda.is_available())"
step "done: .venv is ready"
