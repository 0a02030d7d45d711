#!/usr/bin/env bash
# Every GPU check in one command, for the next lent device (about 8 minutes on one H100):
#
#     bash scripts/gpu_checks.sh [OUT_DIR]        # logs, the run's summary.json and table.md go to OUT_DIR
#
# 1. the GPU tests (tests/test_gpu.py: training, the exact pass, references, candidates and
#    recall on the GPU against the CPU);
# 2. the exact pass and a training step at n = 1e5 and 1e6 (bench_scale.py --device cuda,
#    section scale-gpu);
# 3. the first 500 steps of the default run at 10^6 points: `jl-train data=clusters_1e6
#    model.mode=pairs model.k=32 trainer=gpu trainer.max_steps=500` (the auto plan's ten exact
#    passes over 5e11 pairs, each logged with its seconds), 2 Gaussian draws as the reference;
# 4. bench_ddp.py --gpu (trainer=gpu against the DDP path with one device on digits: the
#    GPU-against-CPU comparison of the recipe, section ddp:gpu), beside step 3 on the same GPU;
# 5. one table of all of it (scripts/gpu_table.py), printed and written to OUT_DIR/table.md.
# STEPS (default "tests scale train ddp") picks which of 1-4 run; SIZES (default
# "100000 1000000") the n of step 2.
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
  timeout "${TEST_LIMIT:-90}" $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider >"$OUT/pytest_gpu.log" 2>&1
  echo "pytest rc=$?"; tail -4 "$OUT/pytest_gpu.log"
fi

if [[ $STEPS == *scale* ]]; then
  say "2. exact pass and step at n = 1e5, 1e6"
  timeout "${SCALE_LIMIT:-120}" $PY scripts/bench_scale.py --device cuda --sizes ${SIZES:-100000 1000000} \
      >"$OUT/scale.log" 2>&1
  echo "bench_scale rc=$?"; grep -E "^\{|^\| [0-9]|Fitted|GFLOP" "$OUT/scale.log" | cut -c1-220
  cp docs/benchmarks.md "$OUT/benchmarks.md"
fi
if [[ $STEPS == *ddp* ]]; then
  say "4. bench_ddp.py --gpu, in the background"
  (timeout "${DDP_LIMIT:-300}" $PY scripts/bench_ddp.py --gpu --recipes default >"$OUT/ddp_gpu.log" 2>&1;
   echo "bench_ddp rc=$?" >>"$OUT/ddp_gpu.log") &
fi
if [[ $STEPS == *train* ]]; then
  say "3. the default run at 10^6 points, its first 500 steps"
  RUN=outputs/bench/default_1e6-gpu-$(date +%Y-%m-%d_%H-%M-%S)
  timeout "${TRAIN_LIMIT:-330}" $PY -m jl_lightning.apps.train data=clusters_1e6 model.mode=pairs model.k=32 \
      trainer=gpu trainer.max_steps=500 baseline.draws=2 hydra.run.dir="$RUN" >"$OUT/default_1e6.log" 2>&1
  echo "default_1e6 rc=$?"; grep -vE "^\s*$" "$OUT/default_1e6.log" | tail -8 | cut -c1-220
  cp "$RUN/summary.json" "$OUT/default_1e6_summary.json" 2>/dev/null
  cp "$RUN/train.log" "$OUT/default_1e6_train.log" 2>/dev/null
fi
wait
[[ $STEPS == *ddp* ]] && tail -8 "$OUT/ddp_gpu.log" | cut -c1-220
cp docs/benchmarks.md "$OUT/benchmarks.md"
say "5. the table"
$PY scripts/gpu_table.py "$OUT" | tee "$OUT/table.md"
say "done"
