#!/usr/bin/env bash
# Train on NPROC local processes with torchrun (gloo on CPU, nccl
# on GPUs):  tools/dist_train.sh CONFIG NPROC [tools/train.py options...]
# Environment: see tools/dist_launch.sh.
set -euo pipefail
if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG NPROC [tools/train.py options...]" >&2
    exit 1
fi
TOOL=train.py
TOOL_ARGS=("$1")
NPROC=$2
shift 2
source "$(dirname "${BASH_SOURCE[0]}")/dist_launch.sh"
