#!/usr/bin/env bash
# Create a virtual environment in the repository root and install eca-mmdet
# with its stack: torch, mmcv 2.1.0 built from source against it (no wheel
# exists for torch > 2.1), mmengine 0.10.7, mmdet 3.3.0 and this package in
# editable mode with its test extras. Safe to re-run.
#
#   bash tools/install.sh                       # .venv: torch 2.13.0, numpy 2
#   VENV=.venv-torch21 TORCH_SPEC=torch==2.1.2 NUMPY_SPEC='numpy<2' \
#     bash tools/install.sh                     # the older stack (make install-torch21)
#
# Each torch gets its own pip cache for the mmcv build: pip's wheel cache does
# not know which torch a wheel was compiled against, and an mmcv wheel built
# for another torch fails at import (undefined symbol).
#
# GPU build (needs a CUDA toolkit; not run by CI, which has no GPU): install a
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
# mmcv without CUDA ops is rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
: "${TORCH_SPEC:=torch==2.13.0}"
# numpy 2 with the newest torch; the older stack keeps numpy 1. Every pip
# call below repeats NUMPY_SPEC so that no dependency moves numpy out of it.
: "${NUMPY_SPEC:=numpy>=2}"
VPY=$VENV/bin/python
PIP=("$VPY" -m pip)
step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$VPY" ]; then
  step "creating $VENV with $($PY --version)"
  "$PY" -m venv "$VENV"
fi
step "$TORCH_SPEC, $NUMPY_SPEC, opencv, wheel, ninja (into $VENV)"
# opencv < 4.12 is the last for numpy 1; pip picks it with NUMPY_SPEC.
"${PIP[@]}" install -q "$TORCH_SPEC" "$NUMPY_SPEC" "opencv-python<5" wheel ninja
TORCH_VERSION=$("$VPY" -c "import torch; print(torch.__version__)")
# mmcv's ops report the CUDA they were compiled with ('not available': CPU).
MMCV_CUDA="from mmcv.ops import get_compiling_cuda_version as v"
MMCV_OK="import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'"
if [ "${FORCE_CUDA:-0}" = 1 ]; then
  MMCV_OK="$MMCV_OK; $MMCV_CUDA; assert v() != 'not available'"  # rebuild
fi
if ! "$VPY" -c "$MMCV_OK" >/dev/null 2>&1; then
  CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/eca-mmdet/pip-torch-$TORCH_VERSION
  step "mmcv 2.1.0 from source with compiled ops against torch $TORCH_VERSION: ~17 minutes on 2 cores the first time (wheel cached in $CACHE)"
  # mmcv's setup.py needs setuptools<70; torch 2.13 asks for >=77 (restored below).
  "${PIP[@]}" install -q "setuptools<70"
  REBUILD=()
  if [ "${FORCE_CUDA:-0}" = 1 ]; then
    REBUILD=(--no-cache-dir)
  fi
  # an mmcv that is installed but does not import (built for another torch,
  # or without CUDA ops under FORCE_CUDA=1) is replaced, not kept
  if "${PIP[@]}" show -q mmcv >/dev/null 2>&1; then
    REBUILD+=(--force-reinstall --no-deps)
  fi
  MAX_JOBS=${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)} \
    "${PIP[@]}" install --cache-dir "$CACHE" --no-build-isolation \
    ${REBUILD[@]+"${REBUILD[@]}"} "mmcv==2.1.0" "$NUMPY_SPEC"
fi
# mmengine needs pkg_resources, which setuptools>=81 no longer ships.
step "setuptools for torch and mmengine (>=77.0.3,<81)"
"${PIP[@]}" install -q "setuptools>=77.0.3,<81" "$NUMPY_SPEC"
step "mmengine, mmdet 3.3.0, pycocotools and eca-mmdet (editable, with test extras)"
"${PIP[@]}" install -q "mmengine==0.10.7" "mmdet==3.3.0" pycocotools "$NUMPY_SPEC"
"${PIP[@]}" install -q --no-build-isolation -e ".[tests]" "$NUMPY_SPEC"
"$VPY" -c "import eca_mmdet, mmcv, mmdet, numpy, torch; print('eca-mmdet', eca_mmdet.__version__, '| torch', torch.__version__, '| numpy', numpy.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__)"
"$VPY" -c "import torch; $MMCV_CUDA; print('mmcv ops built with CUDA:', v(), '| torch CUDA:', torch.version.cuda, '| GPU visible:', torch.cuda.is_available())"
step "done: $VENV is ready"
