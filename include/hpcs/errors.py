"""Errors of the HPCS data preparation: subclasses of the common hierarchy (``include.common.errors``).

``HpcsUserError`` (a ``UserError``): the input or the parameters given by whoever submitted the
work are wrong; retrying changes nothing, the message says what to fix. ``HpcsTransientError``
(a ``TransientError``): a service is down or restarting; retried with backoff. ``HpcsConfigError``
(a ``ConfigError``): a connection or setting is wrong, or a service refused our credentials
(HTTP 401/403); no retry. A bare ``HpcsError`` is raised on purpose but not classified
(an answer the protocol does not allow, a step that has not run): it fails like a bug, with the
task's standard retries.

Messages never carry secret material (keys, tokens, JWTs).
"""

from __future__ import annotations

from include.common.errors import ConfigError, SensitiveDataError, TransientError, UserError

__all__ = ["HpcsConfigError", "HpcsError", "HpcsTransientError", "HpcsUserError"]


class HpcsError(SensitiveDataError):
    """Base class of the errors raised by ``include.hpcs`` and the ``hpcs*`` hooks."""


class HpcsUserError(HpcsError, UserError):
    """Bad input from the submitter: fail without retry, say what to fix."""


class HpcsTransientError(HpcsError, TransientError):
    """A network or service failure that a later attempt may not meet."""


class HpcsConfigError(HpcsError, ConfigError):
    """A connection or setting is wrong (for example SFTP authentication, HTTP 401/403): fail
    without retry."""
