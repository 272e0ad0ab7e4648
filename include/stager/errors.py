"""Errors of a transfer job, on the shared hierarchy of ``include.common.errors``.

A :class:`UserError` is caused by what the submitter gave (bad credential, missing source,
permission denied, a malformed job): it is reported back in the job status and e-mail and never
retried. A :class:`TransientError` (network, storage hiccup, a locked replica) and a
:class:`TransferTimeout` are retried with the stager's backoff. A :class:`ConfigurationError` is
the deployment's (a runner interpreter that cannot start): an operator fixes it, no retry.
:class:`Cancelled` is neither: the job was stopped on purpose.

The names stay the stager's own (``include.stager.errors.UserError`` is the stager's subclass of
``include.common.errors.UserError``), so both ``except UserError`` of either module work.
"""

from __future__ import annotations

from include.common import errors as common

__all__ = ["Cancelled", "ConfigurationError", "StagerError", "TransferTimeout", "TransientError", "UserError"]


class StagerError(common.SensitiveDataError):
    """A transfer failed; the message says what was wrong and what to do."""


class UserError(StagerError, common.UserError):
    """The job cannot succeed as submitted; retrying does not help."""

    default_hint = "correct the job (paths, credential, permissions) and submit it again"


class TransientError(StagerError, common.TransientError):
    """The job may succeed when run again."""

    default_hint = "nothing: the job is retried and skips what is already done; if it keeps failing, ask the admins"


class TransferTimeout(TransientError):
    """The overall or the no-progress timeout of the job expired."""


class Cancelled(StagerError):
    """The job was cancelled (kind ``"error"``: not a user error, not transient)."""


class ConfigurationError(StagerError, common.ConfigError):
    """The stager is deployed so that the job cannot run (not the submitter's fault); not retried."""

    default_hint = "the stager admins must fix the deployment (see the message)"
