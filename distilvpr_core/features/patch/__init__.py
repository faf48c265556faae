"""The student's own dense features as local features (issue 28), as in Patch-NetVLAD.

``export.py`` cuts a place-recognition student after its trunk (input
normalisation + backbone: the stride-16 layer-3 map), pools and reduces the
cells to 128-d patch descriptors (PCA fitted on calibration images) and
writes an ONNX file; ``runtime.py`` runs that file with ONNX Runtime and is
the extractor the registry names ``"patch"``: one keypoint per layer-3 cell,
at the cell's centre in the image as captured, matched by mutual nearest
neighbours (features/matching.py).
"""
