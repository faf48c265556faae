#!/usr/bin/env bash
# The paper-scale synthetic benchmark on one CUDA machine, as one prepared run (issue 13):
# render the benchmark town with every frame, then teacher + the key student rows for
# three seeds, the seeds as parallel processes (the GPU is idle most of the time: data
# loading is CPU-bound), then one merged report.
#   OUT=out_dir scripts/gpu_bench.sh [ROWS...]       (default rows: no_distillation distilvpr self_only)
# Needs python3 with torch (CUDA), torchvision, numpy, pillow, pyyaml, tqdm, tensorboard,
# faiss-cpu, trimesh and embreex importable, and this checkout on PYTHONPATH.
# Writes to $OUT: benchmark_synth_gpu.md/.json/.png, results_seed<k>.json, gpu_bench.log,
# seed_logs.txt (every seed's per-epoch lines).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_bench_out}"
PY="${PYTHON:-python3}"
DATA="${DATA:-data/synth_bench_full}"   # must be the data.root of the benchmark config
RUNS="${RUNS:-runs/bench_town_gpu}"
ROWS=("$@"); [ ${#ROWS[@]} -gt 0 ] || ROWS=(no_distillation distilvpr self_only)
mkdir -p "$OUT" "$RUNS"
LOG="$OUT/gpu_bench.log"
export PYTHONUNBUFFERED=1
# ALLOW_CPU=1 runs it without a GPU (a dry run of the script on a tiny config).
"$PY" -c 'import os, torch; ok = torch.cuda.is_available() or os.environ.get("ALLOW_CPU") == "1"
assert ok, "no CUDA device (ALLOW_CPU=1 for a dry run)"
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch", torch.__version__)' | tee "$LOG"
t0=$(date +%s)
if [ ! -f "$DATA/dataset.json" ]; then
  "$PY" -m distilvpr_core.cli synth --config "${SYNTH_CONFIG:-config/synth_bench.yaml}" --out "$DATA" \
      --set route.spacing_m="${SPACING:-1.5}" ${SYNTH_SETS:-} >>"$LOG" 2>&1
fi
echo "town: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
only=(); for r in "${ROWS[@]}"; do only+=(--only "$r"); done
# DEADLINE_S (seconds from the start of this script): training stops in time for the merged
# report; runs cut short are simply missing from it (n seeds shows it).
left=$(( ${DEADLINE_S:-100000} - ($(date +%s) - t0) - 30 ))
[ "$left" -gt 60 ] || { echo "no time left for training after the town" | tee -a "$LOG"; exit 1; }
pids=()
for seed in 0 1 2; do
  timeout "$left" "$PY" scripts/bench_synth.py --config "${BENCH_CONFIG:-config/bench_synth_gpu.yaml}" --seeds "$seed" "${only[@]}" \
      --set "runs_root=$RUNS/seed$seed" --set "output=$RUNS/seed$seed/report.md" >"$RUNS/seed$seed.log" 2>&1 &
  pids+=($!)
done
rc=0
for i in 0 1 2; do
  wait "${pids[$i]}" || { rc=$?; echo "seed $i failed (rc $rc):"; tail -20 "$RUNS/seed$i.log"; } | tee -a "$LOG"
  cp "$RUNS/seed$i/results.json" "$OUT/results_seed$i.json" 2>/dev/null || true
done
echo "training: $(( $(date +%s) - t0 )) s since start" | tee -a "$LOG"
# The per-epoch lines of every seed (progress bars dropped): training curves for the notes.
for i in 0 1 2; do echo "== seed $i"; tr '\r' '\n' <"$RUNS/seed$i.log" | grep -E '^\[' || true; done >"$OUT/seed_logs.txt"
"$PY" scripts/bench_synth.py --config "${BENCH_CONFIG:-config/bench_synth_gpu.yaml}" --report-only \
    --set "runs_root=$RUNS/merged" --set "output=$OUT/benchmark_synth_gpu.md" \
    --merge "$RUNS"/seed*/results.json >>"$LOG" 2>&1
tail -5 "$LOG"
exit $rc
