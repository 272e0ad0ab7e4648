"""The health check operator on the shared translation: a broken system fails without retry, plainly."""

from __future__ import annotations

import json

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from sensitive_data.operators.healthcheck import HealthCheckOperator

SECRET = "hunter2-not-for-logs"


def broken_probe(conn_id: str) -> str:
    raise ConnectionRefusedError(f"[Errno 111] Connection refused\nsecond line with {SECRET}")


def good_probe(conn_id: str) -> str:
    return "version 1.2"


def _op(probe: str) -> HealthCheckOperator:
    return HealthCheckOperator(task_id="thing", conn_id="thing_conn", system="Thing service",
                               probe=f"{__name__}.{probe}", hint="start the thing")


@pytest.fixture
def conn(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_THING_CONN", json.dumps({"conn_type": "generic", "host": "thing.example",
                                                              "port": 4242, "password": SECRET}))


def test_healthy(conn):
    assert _op("good_probe").execute({"params": {}}) == "OK: version 1.2"


def test_broken_system_fails_without_retry_saying_what_to_do(conn):
    op = _op("broken_probe")
    assert op.retries == 0
    with pytest.raises(AirflowFailException) as err:
        op.execute({"params": {}})
    text = str(err.value)
    assert text.startswith("Thing service (connection 'thing_conn') at thing.example:4242 is not usable: ")
    assert "Connection refused" in text and "What to do: start the thing." in text
    assert SECRET not in text


def test_missing_connection_fails_plainly(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_THING_CONN", raising=False)
    with pytest.raises(AirflowFailException, match="the connection is not configured"):
        _op("good_probe").execute({"params": {}})


def test_systems_not_asked_for_are_skipped(conn):
    with pytest.raises(AirflowSkipException):
        _op("good_probe").execute({"params": {"systems": ["other"]}})
