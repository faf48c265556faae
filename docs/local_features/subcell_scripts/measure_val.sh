#!/bin/bash
# Validation measurements of sub-cell keypoints (benchmark town, validation drives; oracle rows).
# Usage: runs/subcell/measure_val.sh S   (S: dir with student.pt copied from the benchmark)
set -e
S=$1
cd /work/wt/patch-refine
source /work/main/.venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
D=/work/main/data/synth_bench
Q="val_dawn train_dawn_winter train_dusk_rain train_night train_fog"
[ -f $S/student.onnx ] || nice -n 19 distilvpr export --checkpoint $S/student.pt --out $S/student.onnx
CAL="--calib /work/main/data/towns/town_1 --calib-count 8"
for t in map_noon noon dawn_winter dusk_rain night fog; do CAL="$CAL --calib-traversal $t"; done
for cfg in $2; do   # name:source:radius:beta
  IFS=: read name src rad beta <<< "$cfg"
  M=$S/patch_160x120_$name.onnx
  [ -f $M ] || nice -n 19 distilvpr export-patch --checkpoint $S/student.pt --out $M --input-size 160x120 --pool 1 \
      --subcell-source $src --subcell-radius $rad --subcell-beta $beta $CAL >> $S/exports.log 2>&1
  O=runs/subcell/val_$name
  nice -n 19 python scripts/pose_conditions.py --dataset $D --map-traversal train_noon --queries $Q \
      --model $S/student.onnx --features patch --local-model $M --frame-stride 4 --oracle-only --out $O > $O.log 2>&1
  nice -n 19 python scripts/keypoint_reprojection.py --dataset $D --map $O/map_patch --queries $Q \
      --frame-stride 4 --out $O/keypoint_reprojection.json >> $O.log 2>&1
  echo "done $name $(date -u +%H:%M:%S)"
done
