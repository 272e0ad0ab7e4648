"""Errors of a transfer job, told apart the way the pipeline reports them.

A :class:`UserError` is caused by what the submitter gave (bad credential, missing source,
permission denied, a malformed job): it is reported back and never retried. Any other
:class:`StagerError` is transient (network, storage hiccup, timeout) and retried.
"""

from __future__ import annotations


class StagerError(Exception):
    """A transfer failed; the message says what was wrong and what to do."""


class UserError(StagerError):
    """The job cannot succeed as submitted; retrying does not help."""


class TransientError(StagerError):
    """The job may succeed when run again."""


class TransferTimeout(TransientError):
    """The overall or the no-progress timeout of the job expired."""


class Cancelled(StagerError):
    """The job was cancelled."""


class ConfigurationError(StagerError):
    """The stager is deployed so that the job cannot run (not the submitter's fault); not retried."""
