"""The errors every pipeline tells apart, by who has to act on them.

``UserError``: the input of whoever submitted the work is wrong (a file, a path, a parameter, a
document); retrying changes nothing. The pipeline reports it back through its channel (Central
EGA, the stager job status, e-mail) and the task fails without retry.
``ConfigError``: a connection or setting of the deployment is wrong (credentials refused, a
missing bucket, a key that does not load); an operator has to fix it; no retry.
``PermissionDenied``: a ``ConfigError`` for a service refusing our credentials (HTTP 401/403,
AMQP ``ACCESS_REFUSED``, a PostgreSQL role that does not exist).
``TransientError``: a service is down, restarting or overloaded; the work is retried with backoff.
Anything else is a bug: it fails loudly, with its traceback.

Each class carries a ``hint`` (what to do), shown after the message. A pipeline subclasses the
classes it uses, so that both ``except HpcsUserError`` and ``except UserError`` work::

    class HpcsError(SensitiveDataError): ...
    class HpcsUserError(HpcsError, UserError): ...
    class HpcsTransientError(HpcsError, TransientError): ...

``str(error)`` is the message with the hint; ``error.reason`` the message alone (for a status
channel that has a field of its own for it). Messages never carry secrets: they reach logs,
status channels, the database and other organisations.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "PermissionDenied",
    "SensitiveDataError",
    "TransientError",
    "UserError",
    "is_transient",
    "kind_of",
]


class SensitiveDataError(Exception):
    """Base of the errors the pipelines raise on purpose.

    :param reason: what was wrong, in the words of whoever has to act (no secrets)
    :param hint: what to do about it; the class's ``default_hint`` when not given
    """

    kind = "error"
    default_hint = ""

    def __init__(self, reason: str, *, hint: str | None = None):
        self.reason = str(reason)
        self.hint = self.default_hint if hint is None else hint
        super().__init__(self.reason)

    def __str__(self) -> str:
        if self.hint and self.hint not in self.reason:
            return f"{self.reason}. What to do: {self.hint}"
        return self.reason

    def __reduce__(self):  # survives pickling (thread and process pools) with its hint
        return _rebuild, (type(self), self.reason, self.hint), dict(self.__dict__)


def _rebuild(cls: type[SensitiveDataError], reason: str, hint: str) -> SensitiveDataError:
    err = cls.__new__(cls)
    SensitiveDataError.__init__(err, reason, hint=hint)
    return err


class UserError(SensitiveDataError):
    """Bad input from the submitter: reported back to them, not retried."""

    kind = "user"
    default_hint = "correct the input and submit the work again"


class ConfigError(SensitiveDataError):
    """A connection or setting of the deployment is wrong: not retried; an operator fixes it."""

    kind = "config"
    default_hint = "check the Airflow connection and settings named in the message"


class PermissionDenied(ConfigError):
    """A service refused our credentials or our right to act (HTTP 401/403, access refused)."""

    default_hint = "check the credentials of the connection named in the message and what they may do"


class TransientError(SensitiveDataError):
    """A service is down, restarting or overloaded: retried with backoff."""

    kind = "transient"
    default_hint = "nothing: the work is retried; if it keeps failing, check that the service is up"


def kind_of(exc: BaseException) -> str:
    """``"user"``, ``"config"``, ``"transient"``; ``"error"`` for a pipeline's base class raised on
    purpose but not classified (handled like a bug); ``"bug"`` for anything else."""
    if isinstance(exc, SensitiveDataError):
        return exc.kind
    return "bug"


def is_transient(exc: BaseException) -> bool:
    """Worth trying again: a ``TransientError``, or a connection refused/reset or a timeout of the
    standard library (a service not listening yet)."""
    if isinstance(exc, SensitiveDataError):
        return isinstance(exc, TransientError)
    return isinstance(exc, (ConnectionError, TimeoutError))
