"""Errors of the confidential clean room: subclasses of the shared ones (``include.common.errors``).

``CleanroomUserError`` (a ``UserError``): the contract, query or parameters given by whoever
submitted the work are wrong; retrying changes nothing, the message says what to fix.
``CleanroomRefused`` (a ``CleanroomUserError``): governance does not (yet) allow the work: a member
has not voted, a data owner has not approved the query or has revoked consent, the runtime's
attestation does not match the approved policy; the message names who or what.
``CleanroomTransientError`` (a ``TransientError``): a service is down or restarting; retried.
``CleanroomConfigError`` (a ``ConfigError``): a connection or setting is wrong (authentication,
namespace). ``CleanroomError`` itself, raised unclassified, is handled like a bug.

So ``sensitive_data.common.errors.translate_errors``, the retry policy and the polling triggers
know them. Messages never carry secret material (dataset keys, member tokens, wrapped secrets).
"""

from __future__ import annotations

from include.common.errors import ConfigError, PermissionDenied, SensitiveDataError, TransientError, UserError


class CleanroomError(SensitiveDataError):
    """Base class of the errors raised by ``include.cleanroom``."""


class CleanroomUserError(CleanroomError, UserError):
    """Bad input from the submitter: fail without retry, say what to fix."""


class CleanroomRefused(CleanroomUserError):
    """Governance refuses the work (votes, approvals, consent, attestation): fail without retry."""

    default_hint = "the members or owners named must vote, approve or consent in governance; then run it again"


class CleanroomTransientError(CleanroomError, TransientError):
    """A network or service failure that a later attempt may not meet."""


class CleanroomConfigError(CleanroomError, ConfigError):
    """A connection or setting is wrong: fail without retry."""


class CleanroomPermissionDenied(CleanroomConfigError, PermissionDenied):
    """Governance or the cluster refused our credentials (HTTP 401/403)."""
