"""The one exception family for errors a user can cause and fix.

Every error raised for bad input, paths, options, files or checkpoints derives from
:class:`UserError`: the CLIs turn any of them into one ``error: ...`` line and exit status 2,
and the service turns them into a 4xx (or a one-line start-up failure).
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what."""


class CheckpointError(UserError):
    """A checkpoint is missing, malformed or does not match its own description."""
