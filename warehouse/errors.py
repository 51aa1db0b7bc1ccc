"""The one exception type for user errors: bad input or state that the user can fix."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input or state the user can fix; the message says what was wrong and what to do.

    Entry points catch it and print the message; any other exception is a bug and keeps its traceback.
    (A ValueError, so that code validating values keeps its natural type.)
    """
