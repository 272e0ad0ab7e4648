"""EGA ingestion end to end: a real Airflow (local and celery executors), the Central EGA stand-in,
RabbitMQ and PostgreSQL; runs started through the REST API by the harness (tests/e2e/conftest.py).

The stand-in (devstack/cega) publishes the triggers and answers files.verified with accessions.
The node's key pair is created in ``$SDP_LOCAL/lega/keys`` (as ``make up`` does) before the runs;
the ``lega_keys`` connection reads it with the development passphrase.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import httpx
import pika
import psycopg2
import pytest

pytestmark = pytest.mark.e2e

PASSPHRASE = "devstack-lega"  # the lega_keys connection's password in airflow_settings.yaml


def _local(stack) -> Path:
    return Path(stack.vars["SDP_LOCAL"])


@pytest.fixture(autouse=True)
def _pause_ega_dags(airflow):
    """Several stacks share one RabbitMQ and its queue names: leave no EGA DAG running here that
    could drain the messages meant for another stack's tests."""
    yield
    for dag_id in ("ega_ingest", "ega_ingest_events"):
        airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})


@pytest.fixture
def lega(airflow):
    """Keys, an inbox user unique to the test, and helpers to upload and ask CEGA."""
    from crypt4gh import lib
    from crypt4gh.keys import get_public_key

    from include.ega.keygen import ensure_keypair

    local = _local(airflow)
    _, pub = ensure_keypair(local / "lega" / "keys", PASSPHRASE)
    node_pk = get_public_key(str(pub))
    sender_sk = bytes(range(32))
    user = f"e2e-{uuid.uuid4().hex[:8]}"
    cega = f"http://127.0.0.1:{airflow.vars['SDP_CEGA_PORT']}"

    class Lega:
        inbox = local / "lega" / "inbox" / user

        def upload(self, filepath: str, plaintext: bytes, encrypt: bool = True) -> None:
            path = self.inbox / filepath
            path.parent.mkdir(parents=True, exist_ok=True)
            if encrypt:
                out = io.BytesIO()
                lib.encrypt([(0, sender_sk, node_pk)], io.BytesIO(plaintext), out)
                plaintext = out.getvalue()
            path.write_bytes(plaintext)

        def trigger(self, filepath: str) -> str:
            r = httpx.post(f"{cega}/trigger", json={"user": user, "filepath": filepath}, timeout=30)
            r.raise_for_status()
            return r.json()["correlation_id"]

        def publish(self, queue: str, body) -> str:
            r = httpx.post(f"{cega}/publish", json={"queue": queue, "body": body}, timeout=30)
            r.raise_for_status()
            return r.json()["correlation_id"]

        def messages(self, routing_key: str, filepath: str | None = None) -> list[dict]:
            params = {"routing_key": routing_key, "user": user}
            if filepath:
                params["filepath"] = filepath
            r = httpx.get(f"{cega}/messages", params=params, timeout=30)
            r.raise_for_status()
            return r.json()

        def wait_for(self, routing_key: str, filepath: str, timeout: float = 180) -> dict:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if got := self.messages(routing_key, filepath):
                    return got[0]
                time.sleep(1)
            raise AssertionError(f"no {routing_key} for {filepath} within {timeout}s")

    Lega.user = user
    return Lega()


def test_ingest_one_file_from_the_ui_dag(airflow, lega):
    lega.upload("ui/sample.c4gh", b"ACGT" * 50000)
    result = airflow.run("ega_ingest_file", conf={"user": lega.user, "filepath": "ui/sample.c4gh"}, timeout=300)
    assert result.state == "success", result.log("verify")
    assert {result.tasks[t] for t in ("register", "ingest", "verify", "accession")} == {"success"}
    completed = lega.wait_for("files.completed", "ui/sample.c4gh", timeout=30)
    assert completed["body"]["accession_id"].startswith("EGAF")
    verified = lega.messages("files.verified", "ui/sample.c4gh")
    assert verified[0]["correlation_id"] == completed["correlation_id"]
    assert "Not a Crypt4GH" not in result.log("ingest")


def test_user_error_fails_the_task_and_tells_cega(airflow, lega):
    lega.upload("bad/plain.txt", b"not encrypted at all", encrypt=False)
    result = airflow.run("ega_ingest_file", conf={"user": lega.user, "filepath": "bad/plain.txt"}, timeout=300)
    assert result.state == "failed"
    assert result.tasks["ingest"] == "failed"
    assert result.tasks["verify"] in ("upstream_failed", "skipped")
    assert "Not a Crypt4GH file" in result.log("ingest")
    err = lega.wait_for("files.error", "bad/plain.txt", timeout=30)
    assert "Not a Crypt4GH file" in err["body"]["reason"]


def test_scheduled_dag_drains_triggers_in_mapped_batches(airflow, lega):
    paths = [f"batch/f{i}.c4gh" for i in range(5)]
    for i, p in enumerate(paths):
        lega.upload(p, f"file {i}".encode() * 1000)
        lega.trigger(p)
    states = []
    for _ in range(4):  # another run (scheduled, event-driven) may take some of the messages first
        result = airflow.run("ega_ingest", conf={"max_messages": 100, "batch_size": 2}, timeout=300)
        states.append(result.state)
        mapped = [t for t in result.tasks if t.startswith("drain_and_ingest.ingest_verify[")]
        if len(mapped) >= 3:
            assert result.state == "success"
            assert all(result.tasks[t] == "success" for t in mapped)
        if all(lega.messages("files.completed", p) for p in paths):
            break
    for p in paths:
        lega.wait_for("files.completed", p, timeout=60)
    assert "success" in states


def test_invalid_message_goes_to_the_dead_letter_queue(airflow, lega):
    marker = f"garbage-{uuid.uuid4().hex}"
    cid = lega.publish(airflow.vars["SDP_LEGA_FILES_QUEUE"], f"{{not json {marker}")
    result = airflow.run("ega_ingest", conf={"max_messages": 100, "batch_size": 10}, timeout=300)
    assert result.state == "success"
    # whichever run drained it (this one, a scheduled or an event-driven one), it is recorded
    # as rejected in the EGA database and kept in the dead-letter queue
    with (
        psycopg2.connect(
            host="127.0.0.1",
            port=int(airflow.vars.get("SDP_POSTGRES_PORT", 5432)),
            user="postgres",
            dbname=airflow.vars["SDP_LEGA_DB"],
        ) as db,
        db.cursor() as cur,
    ):
        cur.execute("SELECT message FROM file_events WHERE event = 'rejected' AND correlation_id = %s", (cid,))
        [(record,)] = cur.fetchall()
    assert "not JSON" in record["reason"] and marker in record["body"]
    conn = pika.BlockingConnection(
        pika.ConnectionParameters("127.0.0.1", int(airflow.vars.get("SDP_RABBITMQ_PORT", 5672)))
    )
    try:
        ch = conn.channel()
        found = None
        for _ in range(10000):
            method, props, body = ch.basic_get(airflow.vars["SDP_LEGA_DEAD_LETTER_QUEUE"], auto_ack=False)
            if method is None:
                break
            if props.correlation_id == cid:
                found = json.loads(body)
                ch.basic_ack(method.delivery_tag)
                break
        ch.close()  # the others go back to the queue, unacknowledged
    finally:
        conn.close()
    assert found is not None and marker in found["body"]


def test_event_driven_dag_starts_within_seconds(airflow, lega):
    airflow.api("PATCH", "/api/v2/dags/ega_ingest_events", json={"is_paused": False})
    try:
        lega.upload("event/e.c4gh", b"event-driven" * 100)
        started = time.monotonic()
        lega.trigger("event/e.c4gh")
        lega.wait_for("files.verified", "event/e.c4gh", timeout=180)
        assert time.monotonic() - started < 180
        lega.wait_for("files.completed", "event/e.c4gh", timeout=120)
        runs = airflow.api("GET", "/api/v2/dags/ega_ingest_events/dagRuns").json()
        assert runs["total_entries"] >= 1
    finally:
        airflow.api("PATCH", "/api/v2/dags/ega_ingest_events", json={"is_paused": True})
