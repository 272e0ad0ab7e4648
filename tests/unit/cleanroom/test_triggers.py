"""The clean room's triggers end at once on a non-transient error and keep waiting (backing off)
through transient ones: a real HTTP server answers 401/403/404, a closed port refuses connections."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web

from sensitive_data.triggers.cleanroom import MAX_BACKOFF, GovernanceAcceptanceTrigger, next_delay


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
    "status,body,words",
    [
        (401, {"error": {"code": "InvalidAuthenticationInfo", "message": "no"}}, "credentials"),
        (403, {"error": {"code": "Forbidden", "message": "not yours"}}, "Forbidden"),
        (404, {"error": {"code": "ProposalNotFound", "message": "gone"}}, "ProposalNotFound"),
    ],
)
async def test_a_non_transient_error_ends_the_wait_at_once(monkeypatch, status, body, words):
    runner, port = await serve(status, body)
    use_connection(monkeypatch, port)
    try:
        if status == 404:  # the document exists but its proposal is gone
            await runner.cleanup()
            runner, port = await serve_document_without_proposal()
            use_connection(monkeypatch, port)
        trigger = GovernanceAcceptanceTrigger("document", "q1", "cr_gov_test", poll_interval=0.1, deadline=None)
        event = await first_event(trigger, timeout=10)
    finally:
        await runner.cleanup()
    assert event["status"] == "error" and words in event["message"]


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


async def test_connection_refused_and_5xx_keep_waiting_until_the_deadline(monkeypatch):
    import time

    use_connection(monkeypatch, free_port())  # nothing listens there
    trigger = GovernanceAcceptanceTrigger("contract", "c1", "cr_gov_test", poll_interval=0.05, deadline=None)
    with pytest.raises(TimeoutError):  # still waiting
        await first_event(trigger, timeout=1.5)
    runner, port = await serve(503, {"error": {"code": "ServiceUnavailable", "message": "restarting"}})
    use_connection(monkeypatch, port)
    try:
        trigger = GovernanceAcceptanceTrigger(
            "contract", "c1", "cr_gov_test", poll_interval=0.05, deadline=time.time() + 1.0
        )
        event = await first_event(trigger, timeout=10)
    finally:
        await runner.cleanup()
    assert event["status"] == "timeout"


def test_backoff_doubles_and_is_capped():
    assert next_delay(2.0, 0) == 2.0
    assert next_delay(2.0, 1) == 4.0 and next_delay(2.0, 3) == 16.0
    assert next_delay(2.0, 50) == MAX_BACKOFF
