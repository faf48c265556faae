#!/bin/bash
# Test drives, ONCE, after the validation choice (match4, radius 4, beta 30); cell centres and RootSIFT beside it.
set -x
cd /work/wt/patch-refine
source /work/main/.venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
S=runs/subcell/student
D=/work/main/data/synth_bench
Q="test_noon test_dawn_winter test_dusk_rain test_night test_fog"
O=runs/subcell/test_match4b30_sift
nice -n 19 python scripts/pose_conditions.py --dataset $D --map-traversal train_noon --queries $Q --model $S/student.onnx \
    --features patch sift --local-model $S/patch_160x120_match4b30.onnx --frame-stride 4 --oracle-only --out $O > $O.log 2>&1
nice -n 19 python scripts/keypoint_reprojection.py --dataset $D --map $O/map_patch --queries $Q --frame-stride 4 \
    --out $O/keypoint_reprojection.json >> $O.log 2>&1
nice -n 19 python scripts/keypoint_reprojection.py --dataset $D --map $O/map_sift --queries $Q --frame-stride 4 \
    --out $O/keypoint_reprojection_sift.json >> $O.log 2>&1
echo "done test match4b30+sift $(date -u +%H:%M:%S)"
O=runs/subcell/test_off
nice -n 19 python scripts/pose_conditions.py --dataset $D --map-traversal train_noon --queries $Q --model $S/student.onnx \
    --features patch --local-model $S/patch_160x120_off.onnx --frame-stride 4 --oracle-only --out $O > $O.log 2>&1
nice -n 19 python scripts/keypoint_reprojection.py --dataset $D --map $O/map_patch --queries $Q --frame-stride 4 \
    --out $O/keypoint_reprojection.json >> $O.log 2>&1
echo "done test off $(date -u +%H:%M:%S)"
# Extraction time (validation drive; the machine runs the benchmark meanwhile).
nice -n 19 python scripts/local_feature_latency.py --dataset $D --traversal val_dawn --kind sift \
    --kind patch=$S/patch_160x120_off.onnx --kind patch=$S/patch_160x120_match8.onnx \
    --kind patch=$S/patch_160x120_match4b30.onnx --frames 40 --out runs/subcell/latency.json > runs/subcell/latency.log 2>&1
echo "done latency $(date -u +%H:%M:%S)"
