"""The one exception type for mistakes a user can fix (bad file, bad value).

The CLI prints these as a one-line ``error: ...`` without a traceback; anything
else is a bug and keeps its traceback.  :func:`short_repr` quotes a value in
such a message without ever printing all of it.
"""
import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 4
_MAX_REPR = 160


def short_repr(value: Any) -> str:
    """``repr`` for an error message: a few items and levels, at most 160 characters
    (a YAML alias tree or a shared pickle list repeats without end once printed)."""
    text = _REPR.repr(value)
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR - 3] + "..."



class UserError(Exception):
    """A problem with the user's input; the message says what to change."""
