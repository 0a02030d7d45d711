#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one go, on a machine with one CUDA GPU:
#
#     bash scripts/gpu_checks.sh [OUT_DIR]        # logs and the run's summary.json go to OUT_DIR
#
# 1. the GPU tests (tests/test_gpu.py);
# 2. the exact pass and a training step at n = 1e5, 3e5, 1e6 (bench_scale.py --device cuda,
#    section scale-gpu);
# 3. `jl-train experiment=clusters_1e6` (its section: bench_scale.py --training-from RUN
#    --experiment clusters_1e6);
# 4. bench_ddp.py --gpu (trainer=gpu against the DDP path with one device on digits, section
#    ddp:gpu), beside step 3 on the same GPU.
# STEPS (default "tests scale train ddp") picks which of them run; SIZES (default
# "100000 300000 1000000") the n of step 2.
# Each step has its own time limit (TEST_LIMIT, SCALE_LIMIT, TRAIN_LIMIT, DDP_LIMIT seconds),
# so a step that fails or overruns leaves the others' figures. jl_lightning must be importable
# (pip install -e . or PYTHONPATH=<repo root>).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# on a machine without a GPU: one line, exit 2, nothing written
if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_checks.sh: error: needs a CUDA GPU (torch sees none on this machine); run it where one is lent" >&2
  exit 2
fi
OUT=${1:-${OUT:-outputs/gpu}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
say() { echo "[$(date +%T)] $*"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
$PY -c "import torch, lightning, hydra; print('torch', torch.__version__, 'lightning', lightning.__version__,
'hydra', hydra.__version__, 'cuda', torch.cuda.is_available(), 'threads', torch.get_num_threads())"

STEPS=${STEPS:-"tests scale train ddp"}
if [[ $STEPS == *tests* ]]; then
  say "1. GPU tests"
  timeout "${TEST_LIMIT:-60}" $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider >"$OUT/pytest_gpu.log" 2>&1
  echo "pytest rc=$?"; tail -4 "$OUT/pytest_gpu.log"
fi

if [[ $STEPS == *scale* ]]; then
  say "2. exact pass and step at n = 1e5, 3e5, 1e6"
  timeout "${SCALE_LIMIT:-150}" $PY scripts/bench_scale.py --device cuda --sizes ${SIZES:-100000 300000 1000000} \
      >"$OUT/scale.log" 2>&1
  echo "bench_scale rc=$?"; grep -E "^\{|^\| [0-9]|Fitted|GFLOP" "$OUT/scale.log" | cut -c1-220
  cp docs/benchmarks.md "$OUT/benchmarks.md"
fi
if [[ $STEPS == *ddp* ]]; then
  say "4. bench_ddp.py --gpu, in the background"
  (timeout "${DDP_LIMIT:-300}" $PY scripts/bench_ddp.py --gpu --recipes default >"$OUT/ddp_gpu.log" 2>&1;
   echo "bench_ddp rc=$?" >>"$OUT/ddp_gpu.log") &
fi
[[ $STEPS == *train* ]] || { wait; exit 0; }

say "3. experiment=clusters_1e6"
RUN=outputs/bench/clusters_1e6-gpu-$(date +%Y-%m-%d_%H-%M-%S)
timeout "${TRAIN_LIMIT:-370}" $PY -m jl_lightning.apps.train experiment=clusters_1e6 hydra.run.dir="$RUN" \
    >"$OUT/clusters_1e6.log" 2>&1
echo "clusters_1e6 rc=$?"; grep -vE "^\s*$" "$OUT/clusters_1e6.log" | tail -25 | cut -c1-220
wait
[[ $STEPS == *ddp* ]] && tail -8 "$OUT/ddp_gpu.log" | cut -c1-220
# the run without its checkpoints, for bench_scale.py --training-from
mkdir -p "$OUT/clusters_1e6_run"
cp -r "$RUN/.hydra" "$RUN/summary.json" "$RUN/train.log" "$RUN/embedding.npy" "$RUN/figures" \
    "$OUT/device.txt" "$OUT/clusters_1e6_run/" 2>/dev/null
cp "$RUN/summary.json" "$OUT/clusters_1e6_summary.json" 2>/dev/null
cp docs/benchmarks.md "$OUT/benchmarks.md"
say "done"
