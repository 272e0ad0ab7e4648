"""Faults: the broker or the database connection drops mid-run; every file still reaches ready once."""

from __future__ import annotations

import socket

import psycopg2
import pytest

from include.ega.errors import TransientError
from tests.integration.ega.conftest import PG

pytestmark = pytest.mark.integration

U = "fault.user"
N = 6


def upload_and_trigger(node, n=N):
    for i in range(n):
        node.upload(U, f"f{i}.c4gh", f"file {i} ".encode() * 5000)
        node.cega.trigger(U, f"f{i}.c4gh")


def run_until_ready(node, max_rounds=10):
    for _ in range(max_rounds):
        try:
            node.run(rounds=1)
        except TransientError:
            continue
        statuses = {r.status for i in range(N) for r in node.file(U, f"f{i}.c4gh")}
        if statuses == {"ready"}:
            return
    raise AssertionError(f"not all ready: {statuses}")


def assert_each_once(node):
    recs = [node.file(U, f"f{i}.c4gh") for i in range(N)]
    assert all(len(r) == 1 and r[0].status == "ready" for r in recs)
    assert len(node.archive_files()) == N
    completed = node.cega.messages("files.completed")
    assert sorted(m["body"]["filepath"] for m in completed) == sorted(f"f{i}.c4gh" for i in range(N))
    assert node.cega.dead_letters() == []
    assert node.sql("SELECT count(*) FROM accessions") == [(N,)]


def kill_amqp(broker):
    broker._conn._impl._transport._sock.shutdown(socket.SHUT_RDWR)


def test_broker_connection_dropped_while_draining(node):
    upload_and_trigger(node)
    real = node.pipeline.receive_files_message
    calls = {"n": 0}

    def flaky(body, cid):
        calls["n"] += 1
        result = real(body, cid)
        if calls["n"] == 3:  # recorded, not yet acknowledged: the broker will redeliver it
            kill_amqp(node.broker)
        return result

    node.pipeline.receive_files_message = flaky
    recorded = node.drain()  # interrupted: the files recorded so far are worked on
    assert len(recorded) == 3
    node.pipeline.receive_files_message = real
    assert not node.pipeline.process(recorded, ("ingest", "verify")).transient
    run_until_ready(node)
    assert_each_once(node)


def test_broker_connection_dropped_before_publishing(node):
    upload_and_trigger(node)
    ids = node.drain()
    kill_amqp(node.broker)  # the next publish (files.verified) reconnects
    res = node.pipeline.process(ids, ("ingest", "verify"))
    assert not res.transient and not res.user_errors
    run_until_ready(node)
    assert_each_once(node)
    assert len(node.cega.messages("files.verified")) == N


def terminate_backends(pg):
    with psycopg2.connect(**PG, dbname="postgres") as admin, admin.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (pg["dbname"],),
        )
    admin.close()


def test_database_connection_dropped_mid_run(node):
    upload_and_trigger(node)
    ids = node.drain()
    real_set_archived = node.db.set_archived
    calls = {"n": 0}

    def drop_then_set(*args):
        calls["n"] += 1
        if calls["n"] in (2, 4):
            terminate_backends(node.pg)
        return real_set_archived(*args)

    node.db.set_archived = drop_then_set
    terminate_backends(node.pg)
    res = node.pipeline.process(ids, ("ingest", "verify"))
    assert not res.user_errors
    node.db.set_archived = real_set_archived
    run_until_ready(node)
    assert_each_once(node)


def test_database_down_is_transient_and_nothing_is_lost(node):
    upload_and_trigger(node, 1)
    real_connect = node.db._connect

    def refuse():
        raise psycopg2.OperationalError("connection refused (simulated)")

    terminate_backends(node.pg)
    node.db._connect = refuse
    node.db.close()
    with pytest.raises(TransientError):
        node.drain()
    node.db._connect = real_connect
    [fid] = node.drain()  # the message was requeued, not lost
    node.pipeline.process([fid], ("ingest", "verify"))
    assert node.db.get(fid).status == "verified"
