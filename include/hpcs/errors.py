"""Errors of the HPCS data preparation, told apart the way every pipeline here does.

``HpcsUserError``: the input or the parameters given by whoever submitted the work are wrong;
retrying changes nothing, the message says what to fix. ``HpcsTransientError``: a service is
down or restarting; worth retrying with backoff. Anything else is a bug or a misconfiguration.

Messages never carry secret material (keys, tokens, JWTs).
"""

from __future__ import annotations


class HpcsError(Exception):
    """Base class of the errors raised by ``include.hpcs``."""


class HpcsUserError(HpcsError):
    """Bad input from the submitter: fail without retry, say what to fix."""


class HpcsTransientError(HpcsError):
    """A network or service failure that a later attempt may not meet."""


class HpcsConfigError(HpcsError):
    """A connection or setting is wrong (for example SFTP authentication): fail without retry."""
