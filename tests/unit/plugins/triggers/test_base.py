"""The polling-trigger base, run the way the triggerer runs it (its ``run()`` async generator),
polling a small real HTTP server through the HTTP hook base."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sensitive_data.common.http import SensitiveDataHttpHook
from sensitive_data.triggers.base import PollingTrigger


class StatusHook(SensitiveDataHttpHook):
    conn_name_attr = "status_conn_id"
    default_conn_name = "status_service"
    system = "status service"


class JobDoneTrigger(PollingTrigger):
    """Waits until ``GET /jobs/<job>`` says ``{"state": "done"}``."""

    def __init__(self, job: str, status_conn_id: str = "status_service", poll_interval: float = 0.05,
                 max_backoff: float = 0.2):
        super().__init__(poll_interval=poll_interval, max_backoff=max_backoff)
        self.job = job
        self.status_conn_id = status_conn_id
        self.polls = 0

    def describe(self) -> str:
        return f"job {self.job}"

    async def poll(self):
        self.polls += 1
        hook = StatusHook(self.status_conn_id)
        answer = await asyncio.to_thread(hook.request, "GET", f"/jobs/{self.job}", f"reading job {self.job}")
        return {"status": "done", "job": self.job} if answer["state"] == "done" else None


class BuggyTrigger(PollingTrigger):
    def __init__(self, poll_interval: float = 0.05):
        super().__init__(poll_interval=poll_interval)

    async def poll(self):
        return {}["missing"]


def _conn(monkeypatch, port):
    monkeypatch.setenv("AIRFLOW_CONN_STATUS_SERVICE", json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                                   "port": port}))


async def _first_event(trigger, timeout=20.0):
    gen = trigger.run()
    try:
        event = await asyncio.wait_for(gen.__anext__(), timeout)
        with pytest.raises(StopAsyncIteration):  # one event, then the generator ends
            await gen.__anext__()
        return event.payload
    finally:
        await gen.aclose()


def test_serialize_mirrors_init():
    trig = JobDoneTrigger("j1", poll_interval=2.0)
    classpath, kwargs = trig.serialize()
    assert classpath.endswith("test_base.JobDoneTrigger")
    assert kwargs == {"job": "j1", "status_conn_id": "status_service", "poll_interval": 2.0, "max_backoff": 0.2}
    assert JobDoneTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_fires_when_done(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/jobs/j1", (200, {"state": "running"}), (200, {"state": "running"}), (200, {"state": "done"}))
    trig = JobDoneTrigger("j1")
    assert asyncio.run(_first_event(trig)) == {"status": "done", "job": "j1"}
    assert trig.polls == 3


def test_401_ends_the_wait_at_once_with_a_clear_message(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/jobs/j1", (401, {"error": {"code": "Unauthorized", "message": "token expired"}}))
    trig = JobDoneTrigger("j1")
    started = time.monotonic()
    event = asyncio.run(_first_event(trig))
    assert time.monotonic() - started < 5 and trig.polls == 1
    assert event["status"] == "error" and event["kind"] == "config" and event["error"] == "PermissionDenied"
    assert event["message"].startswith("waiting for job j1: status service refused our credentials")
    assert "HTTP 401" in event["message"] and "token expired" in event["message"]
    assert "'status_service' connection" in event["message"]


def test_400_is_a_user_error_event(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/jobs/j1", (400, {"message": "no such job id format"}))
    event = asyncio.run(_first_event(JobDoneTrigger("j1")))
    assert event["kind"] == "user" and "no such job id format" in event["message"]


def test_connection_refused_keeps_waiting_then_recovers(monkeypatch, closed_port):
    """Nothing listens at first (connection refused): the trigger keeps polling with backoff, and
    fires once the service comes up on that port."""
    _conn(monkeypatch, closed_port)
    trig = JobDoneTrigger("j1")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"state": "done"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    servers = []

    def start_later():
        time.sleep(1.5)
        server = ThreadingHTTPServer(("127.0.0.1", closed_port), Handler)
        servers.append(server)
        server.serve_forever()

    async def scenario():
        gen = trig.run()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(1.0)
        assert not first.done(), "the trigger stopped waiting on a refused connection"
        assert trig.polls >= 3  # and it kept polling
        threading.Thread(target=start_later, daemon=True).start()
        event = await asyncio.wait_for(first, 20)
        await gen.aclose()
        return event.payload

    try:
        assert asyncio.run(scenario()) == {"status": "done", "job": "j1"}
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_transient_5xx_keeps_waiting(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/jobs/j1", (503, "restarting"), (502, "restarting"), (200, {"state": "done"}))
    trig = JobDoneTrigger("j1")
    assert asyncio.run(_first_event(trig))["status"] == "done" and trig.polls == 3


def test_a_bug_ends_the_wait_naming_the_error():
    event = asyncio.run(_first_event(BuggyTrigger()))
    assert event == {"status": "error", "kind": "bug", "error": "KeyError",
                     "message": "waiting for BuggyTrigger: KeyError: 'missing'"}


def test_backoff_grows_and_is_capped():
    trig = JobDoneTrigger("j", poll_interval=1.0, max_backoff=5.0)
    assert [trig.backoff(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_closed_port_fixture_is_really_closed(closed_port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", closed_port), timeout=2)
