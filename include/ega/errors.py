"""Errors of the EGA pipeline: the shared hierarchy (``include.common.errors``), EGA's names.

``UserError``: the submitter's input is wrong (not a Crypt4GH file, checksum mismatch, path
outside the inbox ...). It is reported to Central EGA (``files.error``), recorded as an error
event, and the work is not retried; its ``reason`` is sent to CEGA as is and already says what to
do (so no hint is added). ``TransientError``: the system had a problem (network, service restart);
the work is retried with backoff. ``ConfigError`` / ``PermissionDenied``: a connection is wrong
(the broker or the database refuses our credentials, the database does not exist); not retried.
``InvalidMessage``: a message that is not JSON or does not match its schema (dead-lettered).
``Conflict``: a value that must be unique is taken (a reused session key, an accession id given
twice); the database layer raises it instead of its driver's exception.
Anything else is a bug and fails loudly. Messages never carry secrets (keys, passwords): they go
to CEGA, logs and the database.
"""

from __future__ import annotations

from include.common import errors as common


class EgaError(common.SensitiveDataError):
    """Base class of the errors this package raises on purpose."""


class UserError(EgaError, common.UserError):
    """Bad input from the submitter; ``reason`` is sent to Central EGA as is."""

    default_hint = ""


class TransientError(EgaError, common.TransientError):
    """A temporary failure of a service we depend on; retry later."""


class ConfigError(EgaError, common.ConfigError):
    """A connection or setting of the EGA node is wrong; not retried."""


class PermissionDenied(ConfigError, common.PermissionDenied):
    """The broker or the database refused our credentials."""


class InvalidMessage(EgaError, common.UserError):
    """A message that is not JSON or does not match its schema: it goes to the dead-letter queue."""

    default_hint = ""


class Conflict(EgaError):
    """A value that must be unique is already taken (the database's unique constraint)."""
