"""Training of the learned local descriptor (features/learned/) on the synthetic town.

``pairs``: exact cross-condition correspondences rendered from the town's own
geometry; ``loss``: the dense InfoNCE loss; ``config``: the YAML config;
``trainer``: the loop, checkpoints and ONNX export; ``cli``: ``distilvpr train-local``.
"""
