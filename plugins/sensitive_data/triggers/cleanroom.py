"""Deferrable waiting of the confidential clean room: no worker slot is held while waiting.

``SparkApplicationTrigger`` polls a SparkApplication's ``status.applicationState.state`` through
the cncf.kubernetes provider's ``AsyncKubernetesHook`` (kubernetes_asyncio) until it is terminal.
``GovernanceAcceptanceTrigger`` polls governance until a contract or query document is Accepted,
its proposal rejected, or the deadline passes; the blocking HTTP call runs in a thread.

Both keep waiting through transient failures (connection refused, timeouts, HTTP 5xx, 408, 429)
with exponential backoff (``next_delay``), and end at once with an ``error`` event on anything
else (401, 403, 404 of what they watch, a malformed answer): waiting longer would change nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

MAX_BACKOFF = 300.0


def next_delay(poll_interval: float, failures: int) -> float:
    """Seconds to the next poll: the interval, doubled for each failure in a row, capped."""
    return min(MAX_BACKOFF, poll_interval * (2 ** min(failures, 16)))


class SparkApplicationTrigger(BaseTrigger):
    """:param name: the SparkApplication
    :param namespace: its namespace
    :param kubernetes_conn_id: the Kubernetes connection
    :param poll_interval: seconds between polls
    :param deadline: time.time() after which the trigger gives up (event status "timeout")
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        kubernetes_conn_id: str = "cleanroom_k8s",
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ):
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
        from kubernetes_asyncio import client as async_client
        from kubernetes_asyncio.client.exceptions import ApiException

        from include.cleanroom.manifest import GROUP, PLURAL, TERMINAL_STATES, VERSION, application_state

        hook = AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)
        last = None
        failures = 0
        while True:
            obj = None
            try:
                async with hook.get_conn() as api:
                    obj = await async_client.CustomObjectsApi(api).get_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL, self.name
                    )
                failures = 0
            except ApiException as exc:
                if exc.status == 404:
                    yield TriggerEvent({"status": "missing", "name": self.name})
                    return
                if exc.status < 500 and exc.status not in (408, 429):
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "name": self.name,
                            "message": f"Kubernetes refused reading SparkApplication {self.name} (HTTP {exc.status})",
                        }
                    )
                    return
                failures += 1
                self.log.warning("reading SparkApplication %s: HTTP %s; retrying", self.name, exc.status)
            except (OSError, TimeoutError) as exc:  # connection refused, reset, DNS
                failures += 1
                self.log.warning("reading SparkApplication %s failed (%s); retrying", self.name, type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 - aiohttp's client errors and the like: the API server restarts
                if type(exc).__module__.split(".")[0] not in ("aiohttp", "kubernetes_asyncio"):
                    yield TriggerEvent(
                        {
                            "status": "error",
                            "name": self.name,
                            "message": f"reading SparkApplication {self.name} failed: {type(exc).__name__}",
                        }
                    )
                    return
                failures += 1
                self.log.warning("reading SparkApplication %s failed (%s); retrying", self.name, type(exc).__name__)
            if obj is not None:
                state = application_state(obj)
                if state != last:
                    self.log.info("SparkApplication %s/%s: %s", self.namespace, self.name, state or "(not seen yet)")
                    last = state
                if state in TERMINAL_STATES:
                    status = obj.get("status") or {}
                    yield TriggerEvent(
                        {
                            "status": "done",
                            "name": self.name,
                            "state": state,
                            "error": (status.get("applicationState") or {}).get("errorMessage", ""),
                            "driver_pod": (status.get("driverInfo") or {}).get("podName", ""),
                            "spark_application_id": status.get("sparkApplicationId", ""),
                        }
                    )
                    return
            if self.deadline is not None and time.time() > self.deadline:
                yield TriggerEvent({"status": "timeout", "name": self.name, "state": last or ""})
                return
            await asyncio.sleep(next_delay(self.poll_interval, failures))


class GovernanceAcceptanceTrigger(BaseTrigger):
    """:param kind: ``contract`` or ``document``
    :param target_id: the contract or document id
    :param cleanroom_governance_conn_id: the governance connection
    :param poll_interval: seconds between polls
    :param deadline: time.time() after which the trigger gives up (event status "timeout")
    """

    def __init__(
        self,
        kind: str,
        target_id: str,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        poll_interval: float = 5.0,
        deadline: float | None = None,
    ):
        super().__init__()
        self.kind = kind
        self.target_id = target_id
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "kind": self.kind,
                "target_id": self.target_id,
                "cleanroom_governance_conn_id": self.cleanroom_governance_conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    @staticmethod
    def poll(conn, kind: str, target_id: str) -> dict:
        """The target's state and, while proposed, its proposal (votes so far)."""
        from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook

        return CleanroomGovernanceHook(conn.conn_id, connection=conn).acceptance(kind, target_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from include.cleanroom.errors import CleanroomTransientError
        from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook

        conn = await CleanroomGovernanceHook(self.cleanroom_governance_conn_id).aget_connection(
            self.cleanroom_governance_conn_id
        )
        last: dict = {}
        failures = 0
        while True:
            try:
                seen = await asyncio.to_thread(self.poll, conn, self.kind, self.target_id)
                failures = 0
            except CleanroomTransientError as exc:  # unreachable, 5xx: governance restarts
                failures += 1
                self.log.warning("polling governance failed (%s); retrying", exc)
                seen = last
            except Exception as exc:  # noqa: BLE001 - 401/403/404 and the like: waiting changes nothing
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"[:500], **(last or {})})
                return
            if seen and seen != last:
                voted = sorted(v["memberId"] for v in seen.get("votes", []))
                self.log.info(
                    "%s %s: %s; voted: %s",
                    self.kind,
                    self.target_id,
                    seen.get("state"),
                    ", ".join(voted) or "nobody yet",
                )
                last = seen
            state = seen.get("state") if seen else None
            if state in ("Accepted", "Draft", "Missing") or seen.get("proposalState") not in (None, "Open"):
                yield TriggerEvent({"status": "resolved", **(seen or {})})
                return
            if self.deadline is not None and time.time() > self.deadline:
                yield TriggerEvent({"status": "timeout", **(seen or {})})
                return
            await asyncio.sleep(next_delay(self.poll_interval, failures))
