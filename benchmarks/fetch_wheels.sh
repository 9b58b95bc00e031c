#!/usr/bin/env bash
# The wheels the lent GPU machine lacks (it reaches no registry), for its Python 3.12, into
# the ignored .whl/ folder that a device call carries; benchmarks/gpu_check.sh installs them.
# Pinned to the versions the CPU suite runs against. omegaconf 2.4 needs only PyYAML, which
# the machine has; rich and its dependencies are listed there too, but travel anyway so that
# the config and progress code never depend on what an image happens to hold.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=(
  omegaconf==2.4.0
  rich==15.0.0
  markdown-it-py==4.3.0
  mdurl==0.1.2
  pygments==2.21.0
)
rm -rf .whl
"$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
