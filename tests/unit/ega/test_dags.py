"""The EGA DAG files: composition only, documented Params, the expected wiring, no I/O at import."""

from __future__ import annotations

import copy
import importlib
import socket
import sys
import time

import pytest

DAGS = ["ega_ingest", "ega_ingest_events", "ega_ingest_file"]


@pytest.fixture(scope="module")
def dags():
    import airflow.sdk  # noqa: F401 - importing Airflow itself is not the DAG files' cost

    import sensitive_data.operators.ega  # noqa: F401

    out = {}
    real_connect = socket.socket.connect

    def no_network(self, *a, **kw):
        raise AssertionError("a DAG file opened a network connection at import")

    socket.socket.connect = no_network
    try:
        for name in DAGS:
            sys.modules.pop(name, None)
            start = time.perf_counter()
            out[name] = importlib.import_module(name).dag
            assert time.perf_counter() - start < 2, f"{name} took too long to import"
    finally:
        socket.socket.connect = real_connect
    return out


@pytest.mark.parametrize("name", DAGS)
def test_metadata_and_params(dags, name):
    dag = dags[name]
    assert dag.dag_id == name
    assert dag.doc_md and "ega" in dag.tags
    assert dag.default_args["owner"] == "ega"
    for pname in dag.params:
        assert dag.params.get_param(pname).description, f"{name}: param {pname} has no description"


def test_scheduled_dag_wiring(dags):
    dag = dags["ega_ingest"]
    assert {t.task_id for t in dag.tasks} == {"drain", "ingest_verify", "accession", "done"}
    assert dag.get_task("done").upstream_task_ids == {"ingest_verify", "accession"}
    assert dag.get_task("accession").trigger_rule == "all_done"
    assert "ingest_verify" in dag.get_task("accession").upstream_task_ids
    assert dag.params["max_messages"] == 100
    assert dag.timetable.delta.total_seconds() == 300


def test_event_dag_is_scheduled_on_an_amqp_asset_watcher(dags):
    dag = dags["ega_ingest_events"]
    [asset] = dag.timetable.asset_condition.objects
    [watcher] = asset.watchers
    assert type(watcher.trigger).__name__ == "AmqpMessageTrigger"
    classpath, _ = watcher.trigger.serialize()
    assert classpath == "sensitive_data.triggers.amqp.AmqpMessageTrigger"


def test_file_dag_params_validate(dags):
    from airflow.sdk.exceptions import ParamValidationError

    dag = dags["ega_ingest_file"]
    assert [t.task_id for t in dag.topological_sort()] == ["register", "ingest", "verify", "accession"]

    def param(name):
        return copy.deepcopy(dag.params.get_param(name))

    with pytest.raises(ParamValidationError):
        param("user").resolve()  # required: no default
    assert param("user").resolve("alice") == "alice"
    assert param("filepath").resolve("dir/a.c4gh") == "dir/a.c4gh"
    with pytest.raises(ParamValidationError):
        param("user").resolve("a")
