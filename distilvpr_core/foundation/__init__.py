"""Foundation: errors, typed config, atomic writes, the local-DDS policy and the preprocessing contract.

Everything else builds on these; they import nothing of the project above them.
"""
