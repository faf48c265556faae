"""Training: the ``distil`` pipeline (teacher -> cache -> student -> eval), its loop, config and run directories.
"""
