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


G = "drain_and_ingest."


@pytest.mark.parametrize("name", ["ega_ingest", "ega_ingest_events"])
def test_draining_dags_wire_a_task_group_through_xcomargs(dags, name):
    dag = dags[name]
    assert {t.task_id for t in dag.tasks} == {G + "drain", G + "ingest_verify", G + "accession", G + "done"}
    assert set(dag.task_group_dict) == {"drain_and_ingest"}
    assert dag.get_task(G + "done").upstream_task_ids == {G + "ingest_verify", G + "accession"}
    assert dag.get_task(G + "accession").trigger_rule == "all_done"
    assert G + "ingest_verify" in dag.get_task(G + "accession").upstream_task_ids
    # the batches flow as the drain's XCom result (an XComArg), not by a task id written elsewhere
    for mapped in ("ingest_verify", "accession"):
        arg = dag.get_task(G + mapped).expand_input.value["file_ids"]
        assert arg.operator.task_id == G + "drain"
    assert dag.params["max_messages"] == 100


def test_retry_settings_are_the_shared_ones(dags):
    from sensitive_data.common.retries import RETRIES_IO, ErrorRetryPolicy

    for name in DAGS:
        for task in dags[name].tasks:
            assert task.retries == RETRIES_IO.retries or task.task_id.endswith("done"), (name, task.task_id)
            assert task.retry_exponential_backoff == 2.0
    op = dags["ega_ingest_file"].get_task("ingest")
    assert isinstance(op.retry_policy, ErrorRetryPolicy) and op.retry_policy.settings is RETRIES_IO


def test_scheduled_dag_timer_is_fixed_and_switched_at_run_time(dags):
    dag = dags["ega_ingest"]
    assert dag.timetable.delta.total_seconds() == 300
    assert dag.get_task(G + "drain").scheduled_switch == "ega_ingest_scheduled"
    assert dags["ega_ingest_events"].get_task(G + "drain").scheduled_switch is None


def test_dag_files_read_no_environment():
    from pathlib import Path

    for path in Path(__file__).resolve().parents[3].joinpath("dags").glob("ega_*.py"):
        text = path.read_text()
        assert "os.environ" not in text and "getenv" not in text and "import os" not in text, path.name


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
