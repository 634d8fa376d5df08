#!/usr/bin/env bash
# Test a checkpoint on NPROC local processes with torchrun (gloo on
# CPU):  tools/dist_test.sh CONFIG CHECKPOINT NPROC [tools/test.py options...]
# Environment: see tools/dist_launch.sh.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT NPROC [tools/test.py options...]" >&2
    exit 1
fi
TOOL=test.py
TOOL_ARGS=("$1" "$2")
NPROC=$3
shift 3
source "$(dirname "${BASH_SOURCE[0]}")/dist_launch.sh"
