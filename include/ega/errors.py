"""Errors of the EGA pipeline: who has to act on them.

``UserError``: the submitter's input is wrong (not a Crypt4GH file, checksum mismatch, path
outside the inbox ...). It is reported to Central EGA (``files.error``), recorded as an error
event, and the work is not retried. ``TransientError``: the system had a problem (network,
service restart); the work is retried with backoff. Anything else is a bug and fails loudly.
Messages never carry secrets (keys, passwords): they go to CEGA, logs and the database.
"""

from __future__ import annotations


class EgaError(Exception):
    """Base class of the errors this package raises on purpose."""


class UserError(EgaError):
    """Bad input from the submitter; ``reason`` is sent to Central EGA as is."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TransientError(EgaError):
    """A temporary failure of a service we depend on; retry later."""


class InvalidMessage(EgaError):
    """A message that is not JSON or does not match its schema: it goes to the dead-letter queue."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
