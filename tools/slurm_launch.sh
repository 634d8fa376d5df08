#!/usr/bin/env bash
# What tools/slurm_train.sh and slurm_test.sh share; they source it after
# setting JOB_PARTITION, JOB_NAME, TOOL (train.py / test.py) and TOOL_ARGS
# (the tool's positional arguments and --work-dir), with the tool's other
# options left in "$@".
# Environment, as in mmdet's tools/slurm_*.sh:
#   GPUS           tasks (processes) in all, default 8
#   GPUS_PER_NODE  tasks per node and GPUs asked per node, default 8
#   CPUS_PER_TASK  default 5
#   SRUN_ARGS      more srun options (word-split), e.g. "--time=2:00:00"
# and ours:
#   GRES           srun's --gres, default gpu:$GPUS_PER_NODE; GRES= (empty)
#                  leaves --gres out, for CPU partitions (gloo)
#   PYTHON         the Python on the nodes; default .venv/bin/python of this
#                  checkout when present, else python
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
for var in GPUS GPUS_PER_NODE CPUS_PER_TASK; do
    case "${!var}" in
        ''|*[!0-9]*|0) echo "error: $var must be a positive integer, got '${!var}'" >&2; exit 1 ;;
    esac
done
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$TOOLS")
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
SRUN=(srun -p "$JOB_PARTITION" --job-name="$JOB_NAME")
if [ -n "$GRES" ]; then SRUN+=(--gres="$GRES"); fi
SRUN+=(--ntasks="$GPUS" --ntasks-per-node="$GPUS_PER_NODE"
       --cpus-per-task="$CPUS_PER_TASK" --kill-on-bad-exit=1)
# shellcheck disable=SC2206  # SRUN_ARGS is a list of options, as in mmdet
SRUN+=($SRUN_ARGS)
set -x
exec "${SRUN[@]}" "$PYTHON" -u "$TOOLS/$TOOL" "${TOOL_ARGS[@]}" --launcher=slurm "$@"
