#!/usr/bin/env bash
# The one call on a lent GPU machine: install, then benchmarks/gpu_check.py's steps within
# 8 minutes, everything under $OUT (see benchmarks/README.md).
#   GIT_COMMIT=<sha> bash benchmarks/gpu_check.sh     # there, with .whl carried
#   bash benchmarks/gpu_check.sh --dry-run            # here: the plan and its checks
# Installs fail loudly and stop the call: a step that imports what failed to install would
# only fail later, with less to say.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--dry-run" ]; then
  exec "${PYTHON:-python3}" -m benchmarks.gpu_check --dry-run
fi
: "${OUT:?set OUT to the folder the results go to}"
# the wheels the machine lacks (make gpu-wheels); the command is the device README's
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-deps --no-build-isolation -e .
# kernels/ imports as fastrft.kernels; a checkout run from its root needs the link
[ -e fastrft/kernels ] || ln -s ../kernels fastrft/kernels
# one compile cache for every step: the probe's, the hinge run's and each rung's compiles of
# the same graphs are read back instead of compiled again
export TORCHINDUCTOR_CACHE_DIR=/tmp/fastrft-inductor
exec python3 -m benchmarks.gpu_check --out "$OUT"
