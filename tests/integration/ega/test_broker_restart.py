"""Fault: the machine's RabbitMQ is restarted (``rabbitmqctl stop_app`` / ``start_app``) mid-run.

The broker goes down while the node drains CEGA's triggers (three recorded, none acknowledged),
and again while it publishes ``files.verified``; each time it comes back a few seconds later.
Meanwhile the node goes on as the DAG would (transient errors: try again). Durable queues,
persistent messages and publisher confirms mean nothing is lost: every file reaches *ready*
exactly once, with one archive object and one ``files.completed``.

The restart drops every connection to the broker on this machine and removes non-durable queues,
so other tests that use RabbitMQ at the same moment may see a dropped connection. The broker is
started again even when the test fails, and the test waits until it accepts connections.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import uuid

import pika
import pika.exceptions
import pytest

from include.ega.broker import BrokerSettings, declare
from include.ega.errors import TransientError
from tests.integration.ega.conftest import Node

pytestmark = pytest.mark.integration

U = "restart.user"
N = 8
DOWN_SECONDS = 3.0


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def wait_accepting(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672, connection_attempts=1)).close()
            return
        except pika.exceptions.AMQPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class BrokerControl:
    """Stops the RabbitMQ application and starts it again ``DOWN_SECONDS`` later, in a thread."""

    def __init__(self):
        self.restarts = 0
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def stop_then_start(self) -> None:
        for t in self.threads:  # the previous restart is over: the broker is up when stopped again
            t.join(timeout=120)
        rabbitmqctl("stop_app")
        self.restarts += 1

        def start():
            try:
                time.sleep(DOWN_SECONDS)
                rabbitmqctl("start_app")
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)

        t = threading.Thread(target=start, daemon=True)
        t.start()
        self.threads.append(t)

    def restore(self) -> None:
        for t in self.threads:
            t.join(timeout=120)
        rabbitmqctl("start_app")  # idempotent: a no-op when running
        rabbitmqctl("await_startup")
        wait_accepting()


@pytest.fixture
def broker_control():
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed on this machine")
    try:
        rabbitmqctl("status")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"rabbitmqctl cannot control the local RabbitMQ: {exc}")
    control = BrokerControl()
    try:
        yield control
    finally:
        control.restore()


@pytest.fixture
def durable_amqp():
    """Like ``amqp`` of conftest, but CEGA's capture queue is durable too: it must outlive the restart."""
    sfx = uuid.uuid4().hex[:10]
    s = BrokerSettings(exchange=f"cega_{sfx}", files_queue=f"files_{sfx}", accession_queue=f"stableIDs_{sfx}",
                       dead_letter_queue=f"dead_{sfx}")
    capture = f"cega_out_{sfx}"
    conn = pika.BlockingConnection(s.parameters())
    ch = conn.channel()
    declare(ch, s)
    ch.queue_declare(queue=capture, durable=True)
    ch.queue_bind(queue=capture, exchange=s.exchange, routing_key="files.#")
    conn.close()
    yield s
    wait_accepting()
    conn = pika.BlockingConnection(s.parameters())
    ch = conn.channel()
    for q in (s.files_queue, s.accession_queue, s.dead_letter_queue, capture):
        ch.queue_delete(queue=q)
    ch.exchange_delete(exchange=s.exchange)
    conn.close()


@pytest.fixture
def node(tmp_path, pg, durable_amqp, ega_keys):
    n = Node(tmp_path, pg, durable_amqp, ega_keys)
    yield n
    n.close()


def _retrying(fn, deadline: float):
    """Call ``fn`` until the broker lets it through (what Airflow's retries do for the DAG)."""
    while True:
        try:
            return fn()
        except (TransientError, pika.exceptions.AMQPError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_broker_restarted_mid_drain_and_mid_publish(node, broker_control):
    for i in range(N):
        node.upload(U, f"f{i}.c4gh", f"file {i} ".encode() * 200_000)  # about 1.6 MB each
        node.cega.trigger(U, f"f{i}.c4gh")

    real_receive = node.pipeline.receive_files_message
    received = {"n": 0}

    def receive_then_restart(body, cid):
        result = real_receive(body, cid)
        received["n"] += 1
        if received["n"] == 3 and broker_control.restarts == 0:  # recorded, not acknowledged
            broker_control.stop_then_start()
        return result

    real_publish = node.pipeline.publish
    published = {"n": 0}

    def restart_then_publish(routing_key, message, correlation_id):
        published["n"] += 1
        if published["n"] == 5 and broker_control.restarts == 1:  # the broker is gone as we publish
            broker_control.stop_then_start()
        return real_publish(routing_key, message, correlation_id)

    node.pipeline.receive_files_message = receive_then_restart
    node.pipeline.publish = restart_then_publish

    started = time.monotonic()
    deadline = started + 180
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        ids = _retrying(node.drain, deadline)
        # a task whose file hit a transient error is retried by Airflow with the same batch
        known = [str(r[0]) for r in node.sql("SELECT id FROM files WHERE submission_user = %s", U)]
        result = node.pipeline.process(list(dict.fromkeys(ids + known)), ("ingest", "verify", "accession"))
        assert not result.user_errors, result.user_errors
        _retrying(node.cega.answer_verified, deadline)
        statuses = {f"f{i}": r.status for i in range(N) for r in node.file(U, f"f{i}.c4gh")}
        if set(statuses.values()) == {"ready"} and len(statuses) == N:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    assert broker_control.restarts == 2 and not broker_control.errors, broker_control.errors
    assert set(statuses.values()) == {"ready"} and len(statuses) == N, statuses
    assert received["n"] > N, "the message recorded but not acknowledged before the restart came again"

    recs = [node.file(U, f"f{i}.c4gh") for i in range(N)]
    assert all(len(r) == 1 for r in recs), "a file was registered twice"
    assert len(node.archive_files()) == N, node.archive_files()
    assert sorted(m["body"]["filepath"] for m in node.cega.messages("files.completed")) == sorted(
        f"f{i}.c4gh" for i in range(N)
    )
    assert sorted(m["body"]["filepath"] for m in node.cega.messages("files.verified")) == sorted(
        f"f{i}.c4gh" for i in range(N)
    )
    assert node.cega.dead_letters() == []
    assert node.sql("SELECT count(*) FROM accessions") == [(N,)]
    assert node.sql("SELECT count(*) FROM file_events WHERE event = 'rejected'") == [(0,)]
    print(f"{N} files ready through 2 broker restarts in {elapsed:.1f}s ({received['n']} deliveries)")
