"""One translation of the pipelines' errors into Airflow behaviour.

=====================================  ============================================================
raised in the work                     what Airflow does
=====================================  ============================================================
``UserError`` (and subclasses)         ``AirflowFailException``: the task fails, no retry
``ConfigError`` / ``PermissionDenied`` ``AirflowFailException``: the task fails, no retry
``TransientError``                     ``TransientFailure`` (an ``AirflowException``): retried
                                       with the backoff of the task's retry settings
anything else (a bug)                  raised unchanged with its traceback; the task's standard
                                       retries apply (every step is idempotent)
=====================================  ============================================================

Messages are the errors' own (what was wrong and what to do); the original exception is not
chained, so that nothing it carries (a URL with a token, a driver's message) reaches the log twice.

Use it as a context manager or a decorator around the work::

    with translate_errors():
        pipeline.ingest(file_id)

    @translate_errors()
    def execute(self, context): ...

Operators that defer mix in :class:`SensitiveDataOperatorMixin`: it applies the same translation
when the task resumes, turns the deadline of ``self.defer(timeout=...)`` into a failure that says
what was waited for (``deadline_message()``), and ``raise_for_event(event)`` turns a trigger's error
event into the failure it describes (see ``sensitive_data.triggers.base``).
"""

from __future__ import annotations

from contextlib import ContextDecorator
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferralTimeout

from include.common.errors import ConfigError, TransientError, UserError

__all__ = ["SensitiveDataOperatorMixin", "TransientFailure", "translate_errors"]


class TransientFailure(AirflowException):
    """A transient error, as Airflow sees it: the task is retried with backoff."""


class translate_errors(ContextDecorator):  # noqa: N801 - used like a function: ``with translate_errors():``
    """Translate ``include.common.errors`` into Airflow behaviour (see the module's table).

    :param what: said before the message (``"file 42"``); empty: the message alone
    """

    def __init__(self, what: str = ""):
        self.what = what

    def __enter__(self) -> translate_errors:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            return False
        message = f"{self.what}: {exc}" if self.what else str(exc)
        if isinstance(exc, (UserError, ConfigError)):
            raise AirflowFailException(message) from None
        if isinstance(exc, TransientError):
            raise TransientFailure(f"transient error, will retry: {message}") from None
        return False  # a bug: unchanged, with its traceback


class SensitiveDataOperatorMixin:
    """For operators: error translation when a deferred task resumes, a clear deadline failure.

    Put it before ``BaseOperator``: ``class MyOperator(SensitiveDataOperatorMixin, BaseOperator)``.
    Wrap ``execute`` in :class:`translate_errors` (or use it inside); ``execute_complete`` and the
    other resume methods are translated here.
    """

    def deadline_message(self) -> str:
        """Why the task failed when the ``timeout`` of ``self.defer(...)`` passed: what was waited for."""
        return "the wait ended at its deadline"

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any):
        try:
            with translate_errors():
                return super().resume_execution(next_method, next_kwargs, context)  # type: ignore[misc]
        except TaskDeferralTimeout:
            raise AirflowFailException(f"{self.deadline_message()} (deadline of the deferred wait)") from None

    @staticmethod
    def raise_for_event(event: dict[str, Any]) -> dict[str, Any]:
        """Return a trigger's event, or raise the failure an error event describes
        (``{"status": "error", "kind": ..., "message": ...}`` of ``PollingTrigger``): a user or
        configuration error fails without retry, anything else fails with the standard retries."""
        if event.get("status") != "error":
            return event
        message = f"the wait ended with an error: {event.get('message') or 'no message'}"
        if event.get("kind") in ("user", "config"):
            raise AirflowFailException(message)
        if event.get("kind") == "transient":
            raise TransientFailure(message)
        raise AirflowException(message)
