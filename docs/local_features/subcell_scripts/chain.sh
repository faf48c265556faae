#!/bin/bash
# After the validation choice (match4, radius 4, beta 30): sift reprojection on validation, town_4, test once, latency.
set -x
cd /work/wt/patch-refine
source /work/main/.venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
S=runs/subcell/student
D=/work/main/data/synth_bench
T4=/work/main/data/towns/town_4
Q="val_dawn train_dawn_winter train_dusk_rain train_night train_fog"
nice -n 19 python scripts/keypoint_reprojection.py --dataset $D --map runs/subcell/val_sift/map_sift --queries $Q \
    --frame-stride 4 --out runs/subcell/val_sift/keypoint_reprojection.json
echo "done sift-reproj $(date -u +%H:%M:%S)"
Q4="noon dawn_winter dusk_rain night fog"
for name in off match4b30; do
  O=runs/subcell/town4_$name
  nice -n 19 python scripts/pose_conditions.py --dataset $T4 --map-traversal map_noon --queries $Q4 --model $S/student.onnx \
      --features patch --local-model $S/patch_160x120_$name.onnx --frame-stride 4 --oracle-only --out $O > $O.log 2>&1
  nice -n 19 python scripts/keypoint_reprojection.py --dataset $T4 --map $O/map_patch --queries $Q4 --frame-stride 4 \
      --out $O/keypoint_reprojection.json >> $O.log 2>&1
  echo "done town4 $name $(date -u +%H:%M:%S)"
done
O=runs/subcell/town4_sift
nice -n 19 python scripts/pose_conditions.py --dataset $T4 --map-traversal map_noon --queries $Q4 --model $S/student.onnx \
    --features sift --frame-stride 4 --oracle-only --out $O > $O.log 2>&1
nice -n 19 python scripts/keypoint_reprojection.py --dataset $T4 --map $O/map_sift --queries $Q4 --frame-stride 4 \
    --out $O/keypoint_reprojection.json >> $O.log 2>&1
echo "done town4 sift $(date -u +%H:%M:%S)"
