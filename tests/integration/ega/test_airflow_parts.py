"""The Airflow-facing parts (hooks, operators, triggers) over real services, without a scheduler:
connections come from AIRFLOW_CONN_* variables, operators are executed directly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from sensitive_data.hooks.ega_broker import EgaBrokerHook
from sensitive_data.hooks.ega_db import EgaDbHook
from sensitive_data.hooks.ega_keys import EgaKeysHook
from sensitive_data.operators.ega import (
    EgaAccessionOperator,
    EgaDrainOperator,
    EgaProcessOperator,
    EgaRegisterFileOperator,
)
from sensitive_data.triggers.amqp import AmqpMessageTrigger
from sensitive_data.triggers.ega import EgaAccessionTrigger

pytestmark = pytest.mark.integration

U = "airflow.user"


@pytest.fixture
def conns(node, monkeypatch):
    s = node.cega.s
    env = {
        "LEGA_DB": {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "login": "postgres",
            "schema": node.pg["dbname"],
        },
        "LEGA_BROKER": {
            "conn_type": "amqp",
            "host": "127.0.0.1",
            "port": 5672,
            "login": "guest",
            "password": "guest",
            "schema": "/",
            "extra": {
                "exchange": s.exchange,
                "files_queue": s.files_queue,
                "accession_queue": s.accession_queue,
                "dead_letter_queue": s.dead_letter_queue,
            },
        },
        "LEGA_INBOX": {"conn_type": "generic", "extra": {"backend": "posix", "root": str(node.inbox_dir)}},
        "LEGA_ARCHIVE": {
            "conn_type": "generic",
            "extra": {"backend": "posix", "root": str(node.archive_dir)},
        },
        "LEGA_KEYS": {
            "conn_type": "generic",
            "password": node.keys["node"].passphrase,
            "extra": {"private_key_paths": [str(node.keys["old"].sec_path), str(node.keys["node"].sec_path)]},
        },
    }
    for name, conn in env.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{name}", json.dumps(conn))
    return env


def test_hooks_read_their_connections(conns, node):
    s = EgaBrokerHook().get_settings()
    assert s.files_queue == node.cega.s.files_queue and s.vhost == "/"
    assert "password" not in repr(s)
    assert EgaKeysHook().get_private_keys() == [node.keys["old"].seckey, node.keys["node"].seckey]
    assert EgaDbHook().get_database().statuses([]) == {}
    assert EgaBrokerHook().test_connection()[0]


def test_keys_hook_hides_key_errors(conns, monkeypatch, node):
    bad = dict(conns["LEGA_KEYS"], password="wrong")
    monkeypatch.setenv("AIRFLOW_CONN_LEGA_KEYS", json.dumps(bad))
    with pytest.raises(ValueError, match="could not be loaded") as exc:
        EgaKeysHook().get_private_keys()
    assert exc.value.__cause__ is None and "wrong" not in str(exc.value)


def test_operators_drain_process_and_wait_deferred(conns, node):
    for i in range(3):
        node.upload(U, f"op{i}.c4gh", b"operator" * 100 * (i + 1))
        node.cega.trigger(U, f"op{i}.c4gh")
    node.upload(U, "bad.c4gh", b"not encrypted", encrypt=False)
    node.cega.trigger(U, "bad.c4gh")
    batches = EgaDrainOperator(task_id="drain", batch_size=2).execute({})
    assert [len(b) for b in batches] == [2, 2]
    failures = 0
    for batch in batches:
        try:
            EgaProcessOperator(task_id="p", file_ids=batch).execute({})
        except AirflowFailException as exc:
            failures += 1
            assert "rejected" in str(exc)
    assert failures == 1
    # no accession yet: the accession task defers with a trigger holding no worker slot
    with pytest.raises(TaskDeferred) as deferred:
        EgaAccessionOperator(task_id="a", file_ids=batches[0]).execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, EgaAccessionTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "sensitive_data.triggers.ega.EgaAccessionTrigger"
    node.cega.answer_verified()

    async def first_event():
        async for event in EgaAccessionTrigger(**kwargs).run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), 30))
    assert event["status"] == "accession" and set(event["file_ids"]) <= set(batches[0])
    op = EgaAccessionOperator(task_id="a", file_ids=batches[0])
    try:
        op.execute_complete({}, event, deadline=time.time() + 60)
    except TaskDeferred:  # part of the batch still waits
        pass
    for batch in batches:
        try:
            EgaAccessionOperator(task_id="a", file_ids=batch).execute({})
        except AirflowFailException:
            pass
    statuses = sorted(r.status for i in range(3) for r in node.file(U, f"op{i}.c4gh"))
    assert statuses == ["ready"] * 3
    assert node.file(U, "bad.c4gh")[0].status == "error"


def test_accession_wait_deadline_is_the_defer_timeout(conns, node):
    node.upload(U, "t.c4gh", b"timeout")
    [fid] = EgaRegisterFileOperator(task_id="r", user=U, filepath="t.c4gh").execute({})
    EgaProcessOperator(task_id="p", file_ids=[fid]).execute({})
    op = EgaAccessionOperator(task_id="a", file_ids=[fid], accession_timeout=timedelta(minutes=30))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    assert 29 * 60 < deferred.value.timeout.total_seconds() <= 30 * 60
    # what Airflow does when the timeout passes: the task resumes with "__fail__"
    with pytest.raises(AirflowFailException, match=r"no accession from Central EGA within 0:30:00 .*deadline"):
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, {})


async def _first_payload(trigger, timeout: float = 30):
    gen = trigger.run()
    try:
        return (await asyncio.wait_for(gen.__anext__(), timeout)).payload
    finally:
        await gen.aclose()


def test_accession_trigger_ends_at_once_when_the_broker_refuses_our_credentials(conns, node, monkeypatch):
    bad = dict(conns["LEGA_BROKER"], password="not-the-password")
    monkeypatch.setenv("AIRFLOW_CONN_LEGA_BROKER", json.dumps(bad))
    trig = EgaAccessionTrigger(["00000000-0000-0000-0000-000000000000"], poll_interval=0.2)
    started = time.monotonic()
    event = asyncio.run(_first_payload(trig))
    assert time.monotonic() - started < 15
    assert event["status"] == "error" and event["kind"] == "config"
    assert "refused our credentials" in event["message"] and "lega_broker connection" in event["message"]
    assert "not-the-password" not in event["message"]
    with pytest.raises(AirflowFailException, match="refused our credentials"):
        EgaAccessionOperator(task_id="a", file_ids=[]).execute_complete({}, event, deadline=time.time() + 60)


def test_accession_trigger_ends_at_once_for_an_unknown_database_role(conns, node, monkeypatch):
    bad = dict(conns["LEGA_DB"], login="no_such_role_core_test")
    monkeypatch.setenv("AIRFLOW_CONN_LEGA_DB", json.dumps(bad))
    event = asyncio.run(_first_payload(EgaAccessionTrigger(["00000000-0000-0000-0000-000000000000"],
                                                            poll_interval=0.2)))
    assert event["status"] == "error" and event["kind"] == "config"
    assert 'role "no_such_role_core_test" does not exist' in event["message"]


def test_accession_trigger_keeps_waiting_while_the_database_refuses_connections(conns, node, monkeypatch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("AIRFLOW_CONN_LEGA_DB", json.dumps(dict(conns["LEGA_DB"], port=closed)))
    trig = EgaAccessionTrigger(["00000000-0000-0000-0000-000000000000"], poll_interval=0.2)

    async def scenario():
        gen = trig.run()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(3)
        still_waiting = not first.done()
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        await gen.aclose()
        return still_waiting

    assert asyncio.run(scenario()), "a refused connection (a database restarting) must not end the wait"


def test_register_operator_validates(conns, node):
    with pytest.raises(AirflowFailException, match="invalid request"):
        EgaRegisterFileOperator(task_id="r", user="x", filepath="y").execute({})
    node.upload(U, "r.c4gh", b"again")
    a = EgaRegisterFileOperator(task_id="r", user=U, filepath="r.c4gh").execute({})
    b = EgaRegisterFileOperator(task_id="r", user=U, filepath="r.c4gh").execute({})
    assert a == b


def test_process_user_error_fails_without_retry(conns, node):
    node.upload(U, "e.c4gh", b"x", encrypt=False)
    [fid] = EgaRegisterFileOperator(task_id="r", user=U, filepath="e.c4gh").execute({})
    with pytest.raises(AirflowFailException, match="Not a Crypt4GH file"):
        EgaProcessOperator(task_id="p", file_ids=[fid], steps=["ingest"]).execute({})
    assert node.cega.messages("files.error")[0]["body"]["filepath"] == "e.c4gh"


def test_amqp_event_trigger_fires_when_messages_wait(conns, node):
    trig = AmqpMessageTrigger(queue=None, poll_interval=0.2, cooldown=0.1)
    classpath, kwargs = trig.serialize()
    assert classpath == "sensitive_data.triggers.amqp.AmqpMessageTrigger"

    async def scenario():
        gen = AmqpMessageTrigger(**kwargs).run()
        task = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(1.0)
        assert not task.done()  # empty queue: no event
        node.cega.trigger(U, "event.c4gh")
        event = await asyncio.wait_for(task, 15)
        await gen.aclose()
        return event.payload

    started = time.monotonic()
    payload = asyncio.run(scenario())
    assert payload == {"queue": node.cega.s.files_queue, "messages": 1}
    assert time.monotonic() - started < 10
    assert len(node.drain()) == 1  # the trigger did not consume the message
