"""Evaluation of place recognition: Recall@N, the VPR evaluation of a model, the protocols P/D/S.
"""

#: What ``distilvpr eval --branch`` evaluates (here, not in vpr.py, so the
#: subcommand's flags need no torch).
BRANCHES = ("auto", "student", "teacher", "teacher_image")
