"""Deferrable waiting of the confidential clean room: no worker slot is held while waiting.

Both triggers are ``PollingTrigger``s (``sensitive_data.triggers.base``):

``SparkApplicationTrigger`` polls a SparkApplication's ``status.applicationState.state`` through
the cncf.kubernetes provider's ``AsyncKubernetesHook`` (kubernetes_asyncio) until it is terminal
(or gone: ``{"status": "missing"}``).
``GovernanceAcceptanceTrigger`` polls governance until a contract or query document is Accepted
or its proposal is decided; the blocking HTTP call runs in a thread with a connection resolved
asynchronously first.

Both keep waiting through transient failures (connection refused, timeouts, HTTP 5xx, 408, 429)
with the base's backoff, and end at once with an ``error`` event on anything else (401, 403, a
404 of the proposal they watch, a malformed answer): waiting longer would change nothing. The
deadline is the operator's ``defer(timeout=...)``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from include.cleanroom.errors import CleanroomConfigError, CleanroomPermissionDenied, CleanroomTransientError
from sensitive_data.triggers.base import PollingTrigger

TRANSIENT_STATUS = frozenset({408, 425, 429})


class SparkApplicationTrigger(PollingTrigger):
    """:param name: the SparkApplication
    :param namespace: its namespace
    :param kubernetes_conn_id: the Kubernetes connection
    :param poll_interval: seconds between polls
    """

    def __init__(
        self,
        name: str,
        namespace: str,
        kubernetes_conn_id: str = "cleanroom_k8s",
        poll_interval: float = 5.0,
    ):
        super().__init__(poll_interval=poll_interval)
        self.name = name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self._hook: Any = None
        self._last: str | None = None

    def describe(self) -> str:
        return f"SparkApplication {self.namespace}/{self.name}"

    async def setup(self) -> None:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

        self._hook = AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)

    async def read(self) -> dict | None:
        """The SparkApplication, ``None`` when it does not exist; Kubernetes errors classified."""
        from kubernetes_asyncio import client as async_client
        from kubernetes_asyncio.client.exceptions import ApiException

        from include.cleanroom.manifest import GROUP, PLURAL, VERSION

        what = f"reading SparkApplication {self.name}"
        try:
            async with self._hook.get_conn() as api:
                return await async_client.CustomObjectsApi(api).get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.name
                )
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status >= 500 or exc.status in TRANSIENT_STATUS:
                raise CleanroomTransientError(f"Kubernetes answered HTTP {exc.status} while {what}") from None
            if exc.status in (401, 403):
                raise CleanroomPermissionDenied(
                    f"Kubernetes refused {what} (HTTP {exc.status})",
                    hint=f"check the '{self.kubernetes_conn_id}' connection and its service account's role",
                ) from None
            raise CleanroomConfigError(f"Kubernetes refused {what} (HTTP {exc.status})") from None
        except (OSError, TimeoutError) as exc:  # connection refused, reset, DNS
            raise CleanroomTransientError(f"Kubernetes is unreachable while {what} ({type(exc).__name__})") from None
        except Exception as exc:
            if type(exc).__module__.split(".")[0] in ("aiohttp", "kubernetes_asyncio"):  # the API server restarts
                raise CleanroomTransientError(f"{what} failed ({type(exc).__name__})") from None
            raise

    async def poll(self) -> dict[str, Any] | None:
        from include.cleanroom.manifest import TERMINAL_STATES, application_state

        obj = await self.read()
        if obj is None:
            return {"status": "missing", "name": self.name}
        state = application_state(obj)
        if state != self._last:
            self.log.info("SparkApplication %s/%s: %s", self.namespace, self.name, state or "(not seen yet)")
            self._last = state
        if state not in TERMINAL_STATES:
            return None
        status = obj.get("status") or {}
        return {
            "status": "done",
            "name": self.name,
            "state": state,
            "error": (status.get("applicationState") or {}).get("errorMessage", ""),
            "driver_pod": (status.get("driverInfo") or {}).get("podName", ""),
            "spark_application_id": status.get("sparkApplicationId", ""),
        }


class GovernanceAcceptanceTrigger(PollingTrigger):
    """:param kind: ``contract`` or ``document``
    :param target_id: the contract or document id
    :param cleanroom_governance_conn_id: the governance connection
    :param poll_interval: seconds between polls
    """

    def __init__(
        self,
        kind: str,
        target_id: str,
        cleanroom_governance_conn_id: str = "cleanroom_governance",
        poll_interval: float = 5.0,
    ):
        super().__init__(poll_interval=poll_interval)
        self.kind = kind
        self.target_id = target_id
        self.cleanroom_governance_conn_id = cleanroom_governance_conn_id
        self._conn: Any = None
        self._last: dict = {}

    def describe(self) -> str:
        return f"the votes on {self.kind} {self.target_id}"

    async def setup(self) -> None:
        from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook

        conn_id = self.cleanroom_governance_conn_id
        self._conn = await CleanroomGovernanceHook(conn_id).aget_connection(conn_id)

    @staticmethod
    def acceptance(conn: Any, kind: str, target_id: str) -> dict:
        """The target's state and, while proposed, its proposal (votes so far)."""
        from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook

        return CleanroomGovernanceHook(conn.conn_id, connection=conn).acceptance(kind, target_id)

    async def poll(self) -> dict[str, Any] | None:
        seen = await asyncio.to_thread(self.acceptance, self._conn, self.kind, self.target_id)
        if seen != self._last:
            voted = sorted(v["memberId"] for v in seen.get("votes", []))
            self.log.info("%s %s: %s; voted: %s", self.kind, self.target_id, seen.get("state"),
                          ", ".join(voted) or "nobody yet")
            self._last = seen
        if seen.get("state") in ("Accepted", "Draft", "Missing") or seen.get("proposalState") not in (None, "Open"):
            return {"status": "resolved", **seen}
        return None
