"""The clean room's triggers (``PollingTrigger``s) end at once on a non-transient error and keep
waiting (backing off) through transient ones: a real HTTP server answers 401/403/404, a closed port
refuses connections. The deadline is the operator's ``defer(timeout=...)`` (tests/unit/plugins/operators)."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web

from sensitive_data.triggers.cleanroom import GovernanceAcceptanceTrigger


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def use_connection(monkeypatch, port: int) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http", "password": "tok"}
    monkeypatch.setenv("AIRFLOW_CONN_CR_GOV_TEST", json.dumps(conn))


async def serve(status: int, body: dict):
    async def handler(request):
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def first_event(trigger, timeout: float):
    async def first():
        async for event in trigger.run():
            return event.payload

    return await asyncio.wait_for(first(), timeout)


@pytest.mark.parametrize(
    "status,body,words,kind",
    [
        (401, {"error": {"code": "InvalidAuthenticationInfo", "message": "no"}}, "credentials", "config"),
        (403, {"error": {"code": "Forbidden", "message": "not yours"}}, "Forbidden", "config"),
        (404, {"error": {"code": "ProposalNotFound", "message": "gone"}}, "ProposalNotFound", "user"),
    ],
)
async def test_a_non_transient_error_ends_the_wait_at_once(monkeypatch, status, body, words, kind):
    runner, port = await serve(status, body)
    use_connection(monkeypatch, port)
    try:
        if status == 404:  # the document exists but its proposal is gone
            await runner.cleanup()
            runner, port = await serve_document_without_proposal()
            use_connection(monkeypatch, port)
        trigger = GovernanceAcceptanceTrigger("document", "q1", "cr_gov_test", poll_interval=0.1)
        event = await first_event(trigger, timeout=10)
    finally:
        await runner.cleanup()
    assert event["status"] == "error" and event["kind"] == kind and words in event["message"]
    assert event["message"].startswith("waiting for the votes on document q1: ")


async def serve_document_without_proposal():
    async def document(request):
        return web.json_response({"id": "q1", "state": "Proposed", "proposalId": "p1", "contractId": "c1"})

    async def proposal(request):
        return web.json_response({"error": {"code": "ProposalNotFound", "message": "gone"}}, status=404)

    app = web.Application()
    app.router.add_get("/userdocuments/q1", document)
    app.router.add_get("/proposals/p1", proposal)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_connection_refused_and_5xx_keep_waiting_with_backoff(monkeypatch):
    use_connection(monkeypatch, free_port())  # nothing listens there
    trigger = GovernanceAcceptanceTrigger("contract", "c1", "cr_gov_test", poll_interval=0.05)
    with pytest.raises(TimeoutError):  # still waiting
        await first_event(trigger, timeout=1.5)
    runner, port = await serve(503, {"error": {"code": "ServiceUnavailable", "message": "restarting"}})
    use_connection(monkeypatch, port)
    try:
        trigger = GovernanceAcceptanceTrigger("contract", "c1", "cr_gov_test", poll_interval=0.05)
        with pytest.raises(TimeoutError):  # still waiting
            await first_event(trigger, timeout=1.0)
    finally:
        await runner.cleanup()
    assert trigger.backoff(1) == 0.05 and trigger.backoff(3) == 0.2
    assert GovernanceAcceptanceTrigger("contract", "c1", poll_interval=2.0).backoff(50) == 300.0


async def test_the_wait_ends_when_governance_has_decided(monkeypatch):
    async def contract(request):
        return web.json_response({"id": "c1", "state": "Accepted", "version": "1", "data": {}})

    app = web.Application()
    app.router.add_get("/contracts/c1", contract)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    use_connection(monkeypatch, port)
    try:
        event = await first_event(GovernanceAcceptanceTrigger("contract", "c1", "cr_gov_test", poll_interval=0.05), 10)
    finally:
        await runner.cleanup()
    assert event["status"] == "resolved" and event["state"] == "Accepted"


class FailingKubernetes:
    """An API server that answers every read with one HTTP status (kubernetes_asyncio's ApiException)."""

    def __init__(self, status: int):
        self.status = status

    def get_conn(self):
        from kubernetes_asyncio.client.exceptions import ApiException

        status = self.status

        class Conn:
            async def __aenter__(self):
                raise ApiException(status=status, reason="test")

            async def __aexit__(self, *exc):
                return False

        return Conn()


@pytest.mark.parametrize(
    "status,expected",
    [(403, {"status": "error", "kind": "config"}), (422, {"status": "error", "kind": "config"}),
     (404, {"status": "missing", "name": "cr-q1-abc"}), (503, None)],
)
async def test_spark_trigger_classifies_kubernetes_answers(status, expected):
    from sensitive_data.triggers.cleanroom import SparkApplicationTrigger

    trigger = SparkApplicationTrigger("cr-q1-abc", "cleanroom", "k8s", poll_interval=0.05)

    async def setup():
        trigger._hook = FailingKubernetes(status)

    trigger.setup = setup
    if expected is None:  # a restarting API server is waited for
        with pytest.raises(TimeoutError):
            await first_event(trigger, timeout=1.0)
        return
    event = await first_event(trigger, timeout=10)
    assert {k: event[k] for k in expected} == expected
    if event["status"] == "error":
        assert event["message"].startswith("waiting for SparkApplication cleanroom/cr-q1-abc: Kubernetes refused")
        assert f"HTTP {status}" in event["message"]
