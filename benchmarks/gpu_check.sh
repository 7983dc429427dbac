#!/usr/bin/env bash
# Issue #5's whole GPU check in one device call, most important first.
#
#   device run: command "bash benchmarks/gpu_check.sh", carry [".whl"], timeout_s 600
#
# .whl holds the pure-Python wheels the device image lacks (monai, pydicom; benchmarks/README.md).
# Each stage gets a time budget out of BUDGET seconds (keep it ~60 s under the call's timeout) and
# is skipped when too little is left, so a slow compile costs the later stages, not the whole call.
# $OUT receives at most 7 files (the device returns 8): log.txt and one JSON per timing stage.
#
# Dry run of the plumbing on a CPU machine:
#   DEVICE=cpu CONFIG=tiny GOAL=32:4 SETTINGS="" AGREE=30 OUT=/tmp/gpu-dry bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/xraystyle-gpu}
DEVICE=${DEVICE:-cuda}
CONFIG=${CONFIG:-paper-256}
AGREE=${AGREE:-200}                   # steps of the reference/fast loss-curve comparison (also the goal timing)
GOAL=${GOAL:-256:8}                   # size:batch of the issue's goal
SETTINGS=${SETTINGS-"512:8 256:32"}   # further size:batch settings, timed when time is left
BUDGET=${BUDGET:-540}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
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
  if ((limit < 30)); then echo "== $name: skipped (${left}s left)" | tee -a "$LOG"; return; fi
  echo "== $name (limit ${limit}s): $*" >>"$LOG"
  local t=$SECONDS
  timeout -k 5 "$limit" "$@" >"/tmp/stage-$name.log" 2>&1
  local rc=$?
  cat "/tmp/stage-$name.log" >>"$LOG"
  echo "== $name: rc $rc, $((SECONDS - t)) s" | tee -a "$LOG"
  grep -v -e "warm-up step" -e "^W[0-9]" "/tmp/stage-$name.log" | tail -n 22
}

{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>&1
  python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"; } 2>&1 | tee -a "$LOG"
bench="python3 benchmarks/train_step.py --config $CONFIG --device $DEVICE"

[ "$DEVICE" = cuda ] && stage ceilings 60 python3 benchmarks/ceilings.py --json "$OUT/ceilings.json"
# The goal setting: fast first (its timing is the goal row), then reference; loss curves compared.
stage agree 330 $bench --mode fast,reference --size "${GOAL%%:*}" --batch "${GOAL##*:}" --agree "$AGREE" \
  --warmup 20 --json "$OUT/agree.json"
[ "$DEVICE" = cuda ] && stage tests 150 python3 -m pytest -q -p no:cacheprovider -x -m gpu \
  tests/training/test_training_cuda.py tests/transforms/test_transforms_physics.py
for sb in $SETTINGS; do
  stage "time_${sb/:/x}" 150 $bench --mode fast,reference --size "${sb%%:*}" --batch "${sb##*:}" \
    --iters 10 --warmup 5 --json "$OUT/time_${sb/:/x}.json"
done
# Variants of fast at the goal setting: TF32 for the fp32 R1 pass; CUDA graphs through torch.compile.
stage variants 120 $bench --mode fast,fast+tf32 --size "${GOAL%%:*}" --batch "${GOAL##*:}" --iters 20 \
  --warmup 10 --json "$OUT/variants.json"
[ "$DEVICE" = cuda ] && stage graphs 120 $bench --mode fast --compile-mode reduce-overhead --size "${GOAL%%:*}" \
  --batch "${GOAL##*:}" --iters 20 --warmup 10 --json "$OUT/graphs.json"

echo; echo "== done in $((SECONDS - T0)) s"
python3 benchmarks/summarize.py "$OUT" | tee -a "$LOG"
