"""Retry settings, defined once per kind of work, and the policy that applies them at run time.

=====================  =========  ===========  ===========  ==========  ===================================
settings               retries    first delay  backoff      at most     for
=====================  =========  ===========  ===========  ==========  ===================================
``RETRIES_IO``         3          30 s         doubling     10 min      storage, databases, message
                                                                        brokers (EGA)
``RETRIES_SERVICE``    3          15 s         doubling     10 min      HTTP services (HPCS server,
                                                                        governance, Vault, Kubernetes)
``RETRIES_TRANSFER``   4          30 s         x attempt    30 min      long transfers (the stager:
                                                                        30, 60, 90, 120 s)
``RETRIES_NONE``       0          -            -            -           checks whose answer is the point
                                                                        (``platform_healthcheck``)
=====================  =========  ===========  ===========  ==========  ===================================

``backoff="exponential"`` (the default): each delay is the one before times ``multiplier``;
``backoff="linear"``: the first delay times the attempt. A DAG takes them as its ``default_args``::

    default_args=default_args(RETRIES_IO, owner="ega")

which sets Airflow's ``retries``, ``retry_delay``, ``retry_exponential_backoff`` (a multiplier in
Airflow 3: ``True`` would mean 1.0, no backoff; 0 for a linear backoff, which only the policy
computes) and ``max_retry_delay``, plus ``retry_policy``:
:class:`ErrorRetryPolicy`, evaluated in the worker when a try fails. It fails a user or
configuration error at once (even one raised outside ``translate_errors``) and computes the delay
of the next try at run time, so a deployment tunes it without touching a DAG file: Airflow
configuration ``[sensitive_data] retry_delay_seconds`` (environment
``AIRFLOW__SENSITIVE_DATA__RETRY_DELAY_SECONDS``), when set, replaces the first delay of every kind
(the test stacks set it to a few seconds). A value that is not a number fails the task.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy
from airflow.sdk.exceptions import AirflowFailException

from include.common.errors import ConfigError, TransientError, UserError
from sensitive_data.common.errors import TransientFailure

__all__ = [
    "RETRIES_IO",
    "RETRIES_NONE",
    "RETRIES_SERVICE",
    "RETRIES_TRANSFER",
    "ErrorRetryPolicy",
    "RetrySettings",
    "configured_first_delay",
    "default_args",
]

CONFIG_SECTION = "sensitive_data"
CONFIG_KEY = "retry_delay_seconds"
BACKOFFS = ("exponential", "linear")


@dataclass(frozen=True)
class RetrySettings:
    """:param name: the kind of work (in logs)
    :param retries: tries after the first
    :param first_delay: the delay before the first retry
    :param multiplier: with ``backoff="exponential"``, each delay is the one before times this
    :param max_delay: no delay is longer
    :param backoff: ``"exponential"`` (first delay x multiplier ** (try - 1)) or ``"linear"``
        (first delay x try)
    """

    name: str
    retries: int
    first_delay: timedelta = timedelta(seconds=30)
    multiplier: float = 2.0
    max_delay: timedelta = timedelta(minutes=10)
    backoff: str = "exponential"

    def __post_init__(self):
        if self.backoff not in BACKOFFS:
            raise ValueError(f"backoff must be one of {BACKOFFS}, got {self.backoff!r}")

    def delay(self, try_number: int, first: timedelta | None = None) -> timedelta:
        """The delay after try ``try_number`` (1 for the first try) failed."""
        base = (first if first is not None else self.first_delay).total_seconds()
        if self.backoff == "linear":
            seconds = base * max(try_number, 1)
        else:
            seconds = base * self.multiplier ** max(try_number - 1, 0)
        return timedelta(seconds=min(seconds, self.max_delay.total_seconds()))

    def task_args(self) -> dict[str, Any]:
        """The operator arguments of these settings (also usable for one task: ``**RETRIES_IO.task_args()``)."""
        return {
            "retries": self.retries,
            "retry_delay": self.first_delay,
            "retry_exponential_backoff": self.multiplier if self.backoff == "exponential" else 0,
            "max_retry_delay": self.max_delay,
            "retry_policy": ErrorRetryPolicy(self),
        }


RETRIES_IO = RetrySettings("io", retries=3, first_delay=timedelta(seconds=30))
RETRIES_SERVICE = RetrySettings("service", retries=3, first_delay=timedelta(seconds=15))
RETRIES_TRANSFER = RetrySettings("transfer", retries=4, first_delay=timedelta(seconds=30),
                                 max_delay=timedelta(minutes=30), backoff="linear")
RETRIES_NONE = RetrySettings("none", retries=0)


def default_args(settings: RetrySettings, *, owner: str, **more: Any) -> dict[str, Any]:
    """A DAG's ``default_args``: ``owner``, the retry settings, and ``more`` (which wins)."""
    return {"owner": owner, **settings.task_args(), **more}


def configured_first_delay() -> timedelta | None:
    """``[sensitive_data] retry_delay_seconds`` of the Airflow configuration, read now; ``None`` if unset.

    :raises AirflowFailException: set to something that is not a non-negative number
    """
    from airflow.sdk.configuration import conf

    raw = conf.get(CONFIG_SECTION, CONFIG_KEY, fallback="")
    if raw is None or str(raw).strip() == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise AirflowFailException(
            f"Airflow configuration [{CONFIG_SECTION}] {CONFIG_KEY} = {raw!r} is not a number of seconds; fix it"
        )
    return timedelta(seconds=seconds)


class ErrorRetryPolicy(RetryPolicy):
    """Decides, in the worker, what a failed try leads to (Airflow 3.3 ``retry_policy``).

    - a ``UserError`` or ``ConfigError`` (also as the explicit ``__cause__`` of another exception):
      fail, no retry;
    - a ``TransientError`` or its translation (``TransientFailure``), any other exception: retry
      (within the task's ``retries``) after ``settings.delay(try_number)``, the first delay taken
      from the Airflow configuration when set there.

    ``AirflowFailException`` never reaches a policy: Airflow fails the task at once.
    """

    def __init__(self, settings: RetrySettings):
        self.settings = settings

    def evaluate(self, exception: BaseException, try_number: int, max_tries: int, context: Any = None) -> RetryDecision:
        for exc in _chain(exception):
            if isinstance(exc, (UserError, ConfigError)):
                return RetryDecision.fail(f"{type(exc).__name__}: not retried")
        try:
            first = configured_first_delay()
        except AirflowFailException as exc:
            return RetryDecision.fail(str(exc))
        delay = self.settings.delay(try_number, first)
        transient = any(isinstance(e, (TransientError, TransientFailure)) for e in _chain(exception))
        what = "transient error" if transient else f"unexpected {type(exception).__name__}"
        return RetryDecision.retry(delay, f"{what}: retry in {delay.total_seconds():.0f}s ({self.settings.name})")

    def serialize(self) -> dict[str, Any]:
        return {"__type": "ErrorRetryPolicy", "settings": self.settings.name}

    def __repr__(self) -> str:  # stable: DAG serialization must not see a memory address
        return f"ErrorRetryPolicy({self.settings.name})"


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__  # an explicit cause only: an error raised while handling another is its own
