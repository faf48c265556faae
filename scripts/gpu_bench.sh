#!/usr/bin/env bash
# The paper-scale synthetic benchmark on one CUDA machine, as one prepared run (issues 13, 27):
# render the benchmark town and the towns (TOWN_SEEDS, default 1-3) with every frame, then
# teacher + the key student rows for three seeds, the seeds as parallel processes (the GPU is
# idle most of the time: data loading is CPU-bound), then one merged report.
#   OUT=out_dir DEADLINE_S=560 scripts/gpu_bench.sh [ROWS...]   (default rows: no_distillation default distilvpr)
# The issue-13 single-town table: BENCH_CONFIG=config/bench_synth_gpu.yaml TOWN_SEEDS= \
#   scripts/gpu_bench.sh no_distillation distilvpr self_only
# Exit status 1 when a seed failed or was stopped by the deadline (the report still has the rest).
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
BENCH_CONFIG="${BENCH_CONFIG:-config/bench_towns_gpu.yaml}"
# The towns (empty TOWN_SEEDS: none); TOWNS_DATA must be the bench config's data.towns folder.
TOWN_SEEDS="${TOWN_SEEDS-1-3}"
TOWNS_DATA="${TOWNS_DATA:-data/towns_full}"
ROWS=("$@"); [ ${#ROWS[@]} -gt 0 ] || ROWS=(no_distillation default distilvpr)
mkdir -p "$OUT" "$RUNS"
LOG="$OUT/gpu_bench.log"
export PYTHONUNBUFFERED=1
# ALLOW_CPU=1 runs it without a GPU (a dry run of the script on a tiny config).
"$PY" -c 'import os, torch; ok = torch.cuda.is_available() or os.environ.get("ALLOW_CPU") == "1"
assert ok, "no CUDA device (ALLOW_CPU=1 for a dry run)"
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch", torch.__version__)' | tee "$LOG"
t0=$(date +%s)
if [ ! -f "$DATA/dataset.json" ]; then
  "$PY" -m distilvpr_core.app.cli synth --config "${SYNTH_CONFIG:-config/synth_bench.yaml}" --out "$DATA" \
      --set route.spacing_m="${SPACING:-1.5}" ${SYNTH_SETS:-} >>"$LOG" 2>&1
fi
echo "town: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
if [ -n "$TOWN_SEEDS" ]; then   # resumable: finished towns are skipped
  "$PY" -m distilvpr_core.app.cli synth --config "${TOWN_CONFIG:-config/synth_towns.yaml}" --out "$TOWNS_DATA" \
      --seeds $TOWN_SEEDS --no-progress --set route.spacing_m="${SPACING:-1.5}" ${TOWN_SETS:-} >>"$LOG" 2>&1
  echo "towns: $(( $(date +%s) - t0 )) s" | tee -a "$LOG"
fi
only=(); for r in "${ROWS[@]}"; do only+=(--only "$r"); done
# DEADLINE_S (seconds from the start of this script): training stops in time for the merged
# report; runs cut short are simply missing from it (n seeds shows it).
left=$(( ${DEADLINE_S:-100000} - ($(date +%s) - t0) - 30 ))
[ "$left" -gt 60 ] || { echo "no time left for training after the town" | tee -a "$LOG"; exit 1; }
# SEEDS: the seeds to run, as parallel processes (default "0 1 2").
read -r -a seeds <<<"${SEEDS:-0 1 2}"
pids=()
for seed in "${seeds[@]}"; do
  timeout "$left" "$PY" scripts/bench_synth.py --config "$BENCH_CONFIG" --seeds "$seed" "${only[@]}" \
      --set "runs_root=$RUNS/seed$seed" --set "output=$RUNS/seed$seed/report.md" >"$RUNS/seed$seed.log" 2>&1 &
  pids+=($!)
done
rc=0
for k in "${!seeds[@]}"; do
  seed=${seeds[$k]}
  # (not inside a pipeline: rc must survive in this shell)
  if ! wait "${pids[$k]}"; then
    rc=1
    { echo "seed $seed failed or was stopped by the deadline:"; tail -20 "$RUNS/seed$seed.log"; } | tee -a "$LOG"
  fi
  cp "$RUNS/seed$seed/results.json" "$OUT/results_seed$seed.json" 2>/dev/null || true
done
echo "training: $(( $(date +%s) - t0 )) s since start" | tee -a "$LOG"
# The per-epoch lines of every seed (progress bars dropped): training curves for the notes.
for seed in "${seeds[@]}"; do echo "== seed $seed"; tr '\r' '\n' <"$RUNS/seed$seed.log" | grep -E '^\[' || true; done >"$OUT/seed_logs.txt"
results=()
for seed in "${seeds[@]}"; do
  if [ -f "$RUNS/seed$seed/results.json" ]; then results+=("$RUNS/seed$seed/results.json"); fi
done
[ ${#results[@]} -gt 0 ] || { echo "no seed finished a run: no report" | tee -a "$LOG"; exit 1; }
"$PY" scripts/bench_synth.py --config "$BENCH_CONFIG" --report-only \
    --set "runs_root=$RUNS/merged" --set "output=$OUT/benchmark_synth_gpu.md" \
    --merge "${results[@]}" >>"$LOG" 2>&1
tail -5 "$LOG"
exit $rc
