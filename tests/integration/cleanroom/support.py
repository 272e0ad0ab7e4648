"""Shared by the clean room's integration, contract and e2e tests: sample data, operator runs with a
minimal context, the connections of airflow_settings.yaml filled with a stack's ports."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace

from devstack.cleanroom_sample import (  # noqa: F401 - shared with the tests
    MEMBER_TOKENS,
    QUERY,
    SHARED,
    VISITS,
    Owner,
    analysis_rules,
    make_sources,
    owners_setup,
)
from devstack.settings import load

CLEANROOM_CONNECTIONS = (
    "cleanroom_governance",
    "cleanroom_automation_hospital_a",
    "cleanroom_automation_hospital_b",
    "cleanroom_k8s",
)
DATASETS = [
    {"name": "visits_a", "owner": "hospital_a", "format": "csv", "schema": VISITS},
    {"name": "visits_b", "owner": "hospital_b", "format": "csv", "schema": VISITS},
]


def connections(v: dict[str, str]) -> dict[str, dict]:
    settings = load(variables={**os.environ, **v})
    found = {c.conn_id: c.as_dict() for c in settings.connections if c.conn_id in CLEANROOM_CONNECTIONS}
    missing = sorted(set(CLEANROOM_CONNECTIONS) - set(found))
    assert not missing, f"airflow_settings.yaml lacks the connections {missing} (see docs/cleanroom-standins.md)"
    return found


class FakeTI:
    def __init__(self, store: dict):
        self.store = store

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        return self.store.get((task_ids, key))

    def xcom_push(self, key: str, value) -> None:
        self.store[(self.task_id, key)] = value


def context(store: dict, task_id: str, run_id: str, dag_id: str = "cleanroom") -> dict:
    ti = FakeTI(store)
    ti.task_id = task_id
    return {"dag_run": SimpleNamespace(dag_id=dag_id, run_id=run_id), "ti": ti}


def run_task(op, store: dict, run_id: str = "manual__1"):
    """Execute ``op`` with a minimal context; a deferral runs its trigger to its first event and
    resumes the operator with it, or, when the ``defer(timeout=...)`` passes first, resumes it the
    way Airflow does at a deferral's deadline (``__fail__`` with ``Trigger timeout``)."""
    from airflow.sdk.exceptions import TaskDeferred

    ctx = context(store, op.task_id, run_id)
    try:
        result = op.execute(ctx)
    except TaskDeferred as deferred:
        timeout = deferred.timeout.total_seconds() if deferred.timeout is not None else None
        try:
            event = asyncio.run(asyncio.wait_for(first_event(deferred.trigger), timeout))
        except TimeoutError:
            result = op.resume_execution("__fail__", {"error": "Trigger timeout"}, ctx)
        else:
            result = op.resume_execution(deferred.method_name, {"event": event.payload, **(deferred.kwargs or {})}, ctx)
    store[(op.task_id, "return_value")] = result
    return result


async def first_event(trigger):
    async for event in trigger.run():
        return event
    raise AssertionError("the trigger ended without an event")


def wait_application(k8s, name: str, namespace: str = "cleanroom", timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = k8s.get_application(name, namespace)
        state = ((obj or {}).get("status") or {}).get("applicationState", {}).get("state")
        if state in ("COMPLETED", "FAILED", "SUBMISSION_FAILED"):
            return obj
        time.sleep(0.5)
    raise AssertionError(f"SparkApplication {name} did not finish within {timeout}s")
