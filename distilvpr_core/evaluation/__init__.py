"""Evaluation of place recognition: Recall@N, the VPR evaluation of a model, the protocols P/D/S.
"""
