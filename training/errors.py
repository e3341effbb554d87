"""The one exception family for user errors (bad input, paths, options, files).

The CLIs turn any :class:`UserError` into a one-line ``error: ...`` message and exit status 2.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what."""
