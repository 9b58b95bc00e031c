#!/usr/bin/env bash
# One scripted call on a lent GPU machine: install, then `fastrft bench` for each preset and
# mode given, results (JSON + log) under $OUT (default benchmarks/results/tmp).
#   bash benchmarks/bench_gpu.sh "--preset resnet50" "--preset vit_b16 --attack pgd --steps 10"
# Wheels the machine lacks travel in .whl/ (see benchmarks/README.md).
set -uo pipefail
OUT=${OUT:-benchmarks/results/tmp}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv \
  | tee "$OUT/nvidia-smi.csv"
i=0
for args in "$@"; do
  i=$((i + 1))
  echo "=== fastrft bench $args"
  # shellcheck disable=SC2086
  python3 -m fastrft bench $args --json "$OUT/bench-$i.json" 2>&1 | tee "$OUT/bench-$i.log"
done
