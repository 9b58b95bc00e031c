#!/usr/bin/env bash
# One scripted call on a lent GPU machine: install, then `fastrft bench` for each argument
# string given, each writing bench-N.json and bench-N.md under $OUT (default
# benchmarks/results/tmp); the output of them all goes to $OUT/bench.log.
#   bash benchmarks/bench_gpu.sh "--preset resnet50" "--preset vit_b16 attack.name=pgd attack.steps=10"
# A call returns at most 8 files (device README): three benches, their 6 files, the log and
# nvidia-smi.csv. Files written before a call runs out of time still come back.
# Wheels the machine lacks travel in .whl/ (see benchmarks/README.md).
set -uo pipefail
OUT=${OUT:-benchmarks/results/tmp}
mkdir -p "$OUT"
if [ "$#" -gt 3 ]; then
  echo "bench_gpu.sh: at most 3 benches a call (a call returns at most 8 files)" >&2
  exit 2
fi
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . > /dev/null 2>&1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv \
  | tee "$OUT/nvidia-smi.csv"
i=0
status=0
for args in "$@"; do
  i=$((i + 1))
  echo "=== fastrft bench $args" | tee -a "$OUT/bench.log"
  # shellcheck disable=SC2086
  python3 -m fastrft bench $args --json "$OUT/bench-$i.json" --markdown "$OUT/bench-$i.md" \
    2>&1 | tee -a "$OUT/bench.log" || status=1
done
exit $status
