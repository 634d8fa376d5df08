#!/usr/bin/env bash
# Quickstart on 2 CPU cores: generate the synthetic shapes set, train an
# ECA-ResNet-18 Mask R-CNN on it, evaluate it (COCO bbox/segm mAP) and render
# predictions. Run `make install` first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
CONFIG=configs/shapes/mask_rcnn_ecaresnet18_shapes.py
DATA=data/shapes
WORK=${WORK_DIR:-work_dirs/shapes_quickstart}
step() { printf '\n==> %s\n' "$*"; }

VERSION=$($PY -c 'from eca_mmdet.datasets.shapes import GENERATOR_VERSION as v; print(v)')
if ! grep -qs "\"version\":\"$VERSION\"" "$DATA/annotations/instances_val.json"; then
  step "1/4 synthetic data set (generator $VERSION) in $DATA"
  $PY tools/make_shapes_dataset.py "$DATA"
else
  step "1/4 synthetic data set: $DATA exists (generator $VERSION)"
fi
# Closer figures across x86-64 machines: torch (ATen), oneDNN and MKL pick
# kernels by CPU instruction set, and their float rounding differs (measured
# on an AMD EPYC, torch 2.13.0, 2026-12-01: 2 epochs of the tiny test config
# end 6e-7 apart with ATen's non-vectorised kernels, 1e-7 with oneDNN capped
# at SSE4.1). Capped at AVX2, an AVX-512 machine runs the kernels an AVX2 one
# does; on an AVX2 machine (that AMD EPYC) the cap changes nothing
# (bit-identical weights). Set the variables to override. docs/quickstart.md
# gives the spread of the mAP across machines.
if [ "$(uname -m)" = x86_64 ]; then
  export ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-avx2}
  export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2}
  export MKL_CBWR=${MKL_CBWR:-AVX2}
fi
# Two single-threaded processes (2 images each) use 2 cores better than one
# process's two threads: the model is too small for ops to split well.
NPROC=${QUICKSTART_NPROC:-$(( $(nproc) >= 2 ? 2 : 1 ))}
step "2/4 training (12 epochs, $NPROC process(es), about 8 minutes on 2 cores) in $WORK"
start=$(date +%s)
if [ "$NPROC" -gt 1 ]; then
  PORT=${PORT:-$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')} \
  OMP_NUM_THREADS=1 PYTHON=$PY tools/dist_train.sh "$CONFIG" "$NPROC" --work-dir "$WORK"
else
  $PY tools/train.py "$CONFIG" --work-dir "$WORK"
fi
echo "training took $(( $(date +%s) - start )) s"
CKPT="$WORK/epoch_12.pth"
step "3/4 COCO evaluation of $CKPT"
$PY tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK/test" --show-dir "$WORK/test/vis"
step "4/4 renderings of 8 val images"
$PY tools/visualize.py "$CONFIG" "$CKPT" $(ls "$DATA"/val/*.png | head -8) \
  --out-dir "$WORK/renderings" --gt "$DATA/annotations/instances_val.json"
$PY tools/plot_curves.py "$WORK" --labels "ECA-ResNet-18 (shapes)" --out "$WORK/curves.png"
# what the ECA layers learned: gates per class on the val images (~20 s)
$PY tools/eca_attention.py "$CONFIG" "$CKPT" --ann "$DATA/annotations/instances_val.json" \
  --max-images 100 --out-dir "$WORK/attention"
$PY - "$WORK" <<'PYEOF'
import json, sys
work = sys.argv[1]
m = json.load(open(f'{work}/test/metrics.json'))
print(f"\nbbox mAP {m['coco/bbox_mAP']:.3f}  segm mAP {m['coco/segm_mAP']:.3f}")
print(f"""metrics:      {work}/test/metrics.json
detections:   {work}/test/results.bbox.json, results.segm.json
renderings:   {work}/renderings/ (contact_sheet.png), {work}/test/vis/
progress GIF: {work}/progress.gif
curves:       {work}/curves.png
ECA gates:    {work}/attention/ (class_mean_gates.png, class_offsets.png, stage_histograms.png, gates.npz)
checkpoints:  {work}/epoch_*.pth""")
PYEOF
