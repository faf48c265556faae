"""The one exception type for mistakes a user can fix (bad file, bad value).

The CLI prints these as a one-line ``error: ...`` without a traceback; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input; the message says what to change."""
