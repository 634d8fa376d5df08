#!/usr/bin/env bash
# Test a checkpoint on a Slurm cluster (mmdet's interface):
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options...]
#   GPUS=8 tools/slurm_test.sh dev eval configs/mask_rcnn_ecanet50_1x.py CKPT --work-dir work_dirs/eval
# Environment (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, GRES, PYTHON):
# see tools/slurm_launch.sh.
set -euo pipefail
if [ "$#" -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py options...]" >&2
    exit 1
fi
JOB_PARTITION=$1
JOB_NAME=$2
TOOL=test.py
TOOL_ARGS=("$3" "$4")
shift 4
source "$(dirname "${BASH_SOURCE[0]}")/slurm_launch.sh"
