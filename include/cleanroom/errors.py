"""Errors of the confidential clean room, told apart the way every pipeline here does.

``CleanroomUserError``: the contract, query or parameters given by whoever submitted the work are
wrong; retrying changes nothing, the message says what to fix. ``CleanroomRefused``: governance
does not (yet) allow the work: a member has not voted, a data owner has not approved the query or
has revoked consent, the runtime's attestation does not match the approved policy; the message
names who or what. ``CleanroomTransientError``: a service is down or restarting; worth retrying.
``CleanroomConfigError``: a connection or setting is wrong (authentication, namespace).

Messages never carry secret material (dataset keys, member tokens, wrapped secrets).
"""

from __future__ import annotations


class CleanroomError(Exception):
    """Base class of the errors raised by ``include.cleanroom``."""


class CleanroomUserError(CleanroomError):
    """Bad input from the submitter: fail without retry, say what to fix."""


class CleanroomRefused(CleanroomUserError):
    """Governance refuses the work (votes, approvals, consent, attestation): fail without retry."""


class CleanroomTransientError(CleanroomError):
    """A network or service failure that a later attempt may not meet."""


class CleanroomConfigError(CleanroomError):
    """A connection or setting is wrong: fail without retry."""
