#!/usr/bin/env bash
# Train on a Slurm cluster (mmdet's interface; one process per task, the
# launcher reads SLURM_PROCID / SLURM_NTASKS / SLURM_NODELIST):
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options...]
#   GPUS=16 GPUS_PER_NODE=8 tools/slurm_train.sh dev mask_r50 configs/mask_rcnn_ecanet50_1x.py work_dirs/mask_r50
# Environment (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, GRES, PYTHON):
# see tools/slurm_launch.sh.
set -euo pipefail
if [ "$#" -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [tools/train.py options...]" >&2
    exit 1
fi
JOB_PARTITION=$1
JOB_NAME=$2
TOOL=train.py
TOOL_ARGS=("$3" "--work-dir=$4")
shift 4
source "$(dirname "${BASH_SOURCE[0]}")/slurm_launch.sh"
