#!/usr/bin/env bash
# Issue #5's whole GPU check in one device call: checks first, then timings, most important first.
#
#   device run: bash benchmarks/gpu_check.sh        carry: [".whl"]        timeout_s: 600
#
# .whl holds the pure-Python wheels the device image lacks (monai, pydicom; see
# benchmarks/README.md). Every stage gets a time budget out of BUDGET seconds and is skipped when
# too little is left, so a slow compile costs the later stages, not the whole call. Results land in
# $OUT (JSON + logs); the table at the end is what the reply carries.
#
# Dry run of the plumbing on a CPU machine:
#   DEVICE=cpu CONFIG=tiny GOAL=32:4 SETTINGS="32:2" AGREE=30 OUT=/tmp/gpu-dry bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/xraystyle-gpu}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-paper-256}
AGREE=${AGREE:-200}                            # steps of the reference/fast loss-curve comparison
GOAL=${GOAL:-256:8}                            # size:batch of the issue's goal, timed first
SETTINGS=${SETTINGS-"512:8 256:32"}           # further size:batch settings, timed last
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/inductor-cache}
T0=$SECONDS

if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} || { echo "wheel install failed"; exit 1; }
fi

stage() {  # stage NAME MAX_SECONDS COMMAND...: run with the smaller of MAX and what is left
  local name=$1 max=$2; shift 2
  local left=$((BUDGET - (SECONDS - T0) - 5))
  local limit=$((max < left ? max : left))
  if ((limit < 30)); then echo "== $name: skipped (${left}s left)" | tee -a "$OUT/summary.txt"; return; fi
  echo "== $name (limit ${limit}s)"
  local t=$SECONDS
  timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc $rc, $((SECONDS - t)) s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null
  python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"; } \
  >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
bench="python3 benchmarks/train_step.py --config $CONFIG --device $DEVICE"

if [ "$DEVICE" = cuda ]; then
  stage ceilings 60 python3 benchmarks/ceilings.py --json "$OUT/ceilings.json"
fi
time_setting() {  # time_setting SIZE:BATCH ITERS WARMUP MAX_SECONDS
  local sb=$1
  stage "time_${sb/:/x}" "$4" $bench --mode reference,fast --size "${sb%%:*}" --batch "${sb##*:}" \
    --iters "$2" --warmup "$3" --json "$OUT/time_${sb/:/x}.json"
}
# The goal setting first (the fast compile fills the inductor cache for the agreement run).
time_setting "$GOAL" 20 10 300
# Loss curves of reference and fast over AGREE steps from one seed (and their step times).
stage agree 240 $bench --mode reference,fast --agree "$AGREE" --warmup 20 --json "$OUT/agree.json"
if [ "$DEVICE" = cuda ]; then
  stage tests 120 python3 -m pytest -q -p no:cacheprovider -x tests/training/test_training_cuda.py \
    tests/transforms/test_transforms_physics.py -m gpu
fi
for sb in $SETTINGS; do time_setting "$sb" 10 5 200; done
if [ "$DEVICE" = cuda ]; then
  stage graphs 150 $bench --mode fast --compile-mode reduce-overhead --iters 20 --warmup 10 --json "$OUT/graphs.json"
fi

echo; echo "== summary ($((SECONDS - T0)) s)"
cat "$OUT/summary.txt"
python3 benchmarks/summarize.py "$OUT"
