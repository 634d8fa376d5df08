#!/usr/bin/env bash
# What tools/dist_train.sh and dist_test.sh share; they source it after
# setting TOOL (train.py / test.py), NPROC and TOOL_ARGS (the positional
# arguments of the tool), with the tool's options left in "$@".
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT in the environment.
# The Python is $PYTHON, else .venv/bin/python when present, else python.
case "$NPROC" in
    ''|*[!0-9]*|0) echo "error: NPROC must be a positive integer, got '$NPROC'" >&2; exit 1 ;;
esac
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$TOOLS")
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Check the config, data and checkpoints once, so that bad input gives one
# line instead of a failure in every process (DIST_SKIP_CHECK=1 skips it,
# e.g. when the data only exists on the other nodes).
if [ "${DIST_SKIP_CHECK:-0}" != 1 ]; then
    "$PYTHON" "$TOOLS/$TOOL" "${TOOL_ARGS[@]}" "$@" --check >/dev/null || exit 1
fi
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$TOOLS/$TOOL" "${TOOL_ARGS[@]}" --launcher pytorch "$@"
