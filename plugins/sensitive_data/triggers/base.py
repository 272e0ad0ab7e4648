"""One polling-trigger base: wait through transient errors, stop at once on anything else.

A subclass stores each ``__init__`` argument under its own name and implements ``poll()``
(and, when it needs one, ``setup()``)::

    class AcceptanceTrigger(PollingTrigger):
        def __init__(self, proposal_id: str, governance_conn_id: str = "governance", poll_interval: float = 5.0):
            super().__init__(poll_interval=poll_interval)
            self.proposal_id = proposal_id
            self.governance_conn_id = governance_conn_id

        def describe(self) -> str:
            return f"the votes on proposal {self.proposal_id}"

        async def setup(self) -> None:           # once, before the first poll (resolve connections)
            self.conn = await BaseHook.aget_connection(self.governance_conn_id)

        async def poll(self) -> dict | None:     # an event's payload when done, None to keep waiting
            state = await asyncio.to_thread(GovernanceHook(connection=self.conn).proposal_state, self.proposal_id)
            return {"status": "done", "state": state} if state in ("Accepted", "Rejected") else None

``run()`` calls ``setup()`` then ``poll()`` every ``poll_interval`` seconds. An error in either:

- transient (``include.common.errors.is_transient``: a ``TransientError``, a connection refused or
  reset, a timeout): logged, and the wait goes on; the pause grows (``poll_interval`` doubled per
  failure in a row, at most ``max_backoff``) and is back to ``poll_interval`` after a success;
- anything else (credentials refused, a missing object, a bug): the wait ends at once with
  ``{"status": "error", "kind": "user"|"config"|"error"|"bug", "error": <class name>,
  "message": "waiting for <describe()>: <what was wrong>"}``.

``serialize()`` mirrors ``__init__``: it returns the value of every ``__init__`` argument, read
from the attribute of the same name.

The deadline is the operator's, not the trigger's: ``self.defer(trigger=..., method_name=...,
timeout=timedelta(...))``. When it passes, Airflow fails the task; with
``sensitive_data.common.errors.SensitiveDataOperatorMixin`` the failure says what was waited for
(``deadline_message()``), and ``execute_complete`` starts with ``self.raise_for_event(event)`` so
that an error event fails the task the way its ``kind`` says (user and configuration errors
without retry).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from include.common.errors import SensitiveDataError, is_transient, kind_of

__all__ = ["PollingTrigger"]

MESSAGE_LIMIT = 500


class PollingTrigger(BaseTrigger):
    """Base of the triggers that poll.

    :param poll_interval: seconds between two polls
    :param max_backoff: the longest pause after transient errors in a row
    """

    def __init__(self, poll_interval: float = 5.0, max_backoff: float = 300.0):
        super().__init__()
        self.poll_interval = float(poll_interval)
        self.max_backoff = float(max_backoff)

    # -- what subclasses write ---------------------------------------------------------------
    def describe(self) -> str:
        """What is waited for, in messages ("the accession of 3 files from Central EGA")."""
        return type(self).__name__

    async def setup(self) -> None:
        """Called once before the first poll (tried again, with the backoff, while it fails transiently)."""

    async def poll(self) -> dict[str, Any] | None:
        """One look: the payload of the event to fire when the wait is over, else ``None``."""
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------------------
    def serialize(self) -> tuple[str, dict[str, Any]]:
        params = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        return f"{type(self).__module__}.{type(self).__qualname__}", {name: getattr(self, name) for name in params}

    def backoff(self, failures: int) -> float:
        """The pause after ``failures`` transient errors in a row."""
        return min(self.poll_interval * 2 ** max(failures - 1, 0), max(self.max_backoff, self.poll_interval))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        failures = 0
        ready = False
        while True:
            try:
                if not ready:
                    await self.setup()
                    ready = True
                payload = await self.poll()
            except Exception as exc:  # noqa: BLE001 - every error is classified right here
                if not is_transient(exc):
                    yield TriggerEvent(self.error_payload(exc))
                    return
                failures += 1
                pause = self.backoff(failures)
                self.log.warning(
                    "waiting for %s: %s (transient, %d in a row); polling again in %.0fs",
                    self.describe(), _text(exc), failures, pause,
                )
                await asyncio.sleep(pause)
                continue
            if failures:
                self.log.info("waiting for %s: polling works again after %d transient error(s)",
                              self.describe(), failures)
                failures = 0
            if payload is not None:
                yield TriggerEvent(payload)
                return
            await asyncio.sleep(self.poll_interval)

    def error_payload(self, exc: BaseException) -> dict[str, Any]:
        """The event that ends the wait on a non-transient error."""
        message = f"waiting for {self.describe()}: {_text(exc)}"
        self.log.error("%s; the wait ends", message)
        return {"status": "error", "kind": kind_of(exc), "error": type(exc).__name__, "message": message}


def _text(exc: BaseException) -> str:
    """The error's message (its first line, shortened); a bug's names its class."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if not isinstance(exc, SensitiveDataError):
        first = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return first[:MESSAGE_LIMIT]
