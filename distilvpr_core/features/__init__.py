"""Local image features for geometric verification and pose (below mapdb and localize).
"""
