"""The stager DAGs: composition, params, callbacks, retries, data flow."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from airflow.sdk.definitions.retry_policy import RetryAction
from airflow.sdk.definitions.xcom_arg import PlainXComArg

from include.stager.errors import TransientError, UserError
from include.stager.pipeline import RUN_ID_KEY, TRANSFER_DAG_ID, TRANSFER_TASK, VALIDATE_TASK
from sensitive_data.common.retries import RETRIES_NONE, RETRIES_TRANSFER, ErrorRetryPolicy, RetrySettings

DAGS = Path(__file__).resolve().parents[3] / "dags"


def test_transfer_dag():
    dag = importlib.import_module("data_stager_transfer").dag
    assert dag.dag_id == TRANSFER_DAG_ID
    assert set(dag.task_dict) == {VALIDATE_TASK, TRANSFER_TASK} == {"validate", "transfer"}
    assert dag.params["timeout"] == 259200 and dag.params["timeout_noprogress"] == 3600
    assert all(p.description for p in dag.params.values())
    assert dag.on_success_callback and dag.on_failure_callback
    assert dag.default_args["owner"] and dag.doc_md and dag.tags


def test_transfer_tasks_take_the_shared_transfer_retries_30s_times_attempt():
    dag = importlib.import_module("data_stager_transfer").dag
    for task in dag.tasks:
        assert task.retries == 4
        assert isinstance(task.retry_policy, ErrorRetryPolicy) and task.retry_policy.settings == RETRIES_TRANSFER
        assert task.retry_exponential_backoff == 0  # linear: only the policy computes the delay
    policy = dag.task_dict[TRANSFER_TASK].retry_policy
    delays = [policy.evaluate(TransientError("network"), try_number=n, max_tries=5).retry_delay.total_seconds()
              for n in (1, 2, 3, 4)]
    assert delays == [30, 60, 90, 120]
    assert policy.evaluate(UserError("no such source"), try_number=1, max_tries=5).action == RetryAction.FAIL


def test_the_backoff_of_the_shared_settings_is_a_choice():
    assert [RetrySettings("x", 3, backoff="linear").delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 90]
    assert [RetrySettings("x", 3).delay(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    with pytest.raises(ValueError, match="backoff"):
        RetrySettings("x", 3, backoff="quadratic")


def test_the_alert_quotes_the_errors_of_the_dags_own_tasks():
    dag = importlib.import_module("data_stager_transfer").dag
    (alert,) = dag.on_failure_callback if isinstance(dag.on_failure_callback, list) else [dag.on_failure_callback]
    assert alert.failed and set(alert.error_tasks) == set(dag.task_dict)


def test_streamer_dag_passes_the_run_id_as_an_xcomarg():
    dag = importlib.import_module("data_stager_streamer").dag
    assert set(dag.task_dict) == {"resolve", "submit"}
    submit = dag.task_dict["submit"]
    assert submit.trigger_dag_id == TRANSFER_DAG_ID
    assert isinstance(submit.trigger_run_id, PlainXComArg)
    assert (submit.trigger_run_id.operator.task_id, submit.trigger_run_id.key) == ("resolve", RUN_ID_KEY)
    assert submit.upstream_task_ids == {"resolve"}
    assert all(t.retries == RETRIES_NONE.retries for t in dag.tasks)


@pytest.mark.parametrize("name", ["data_stager_transfer.py", "data_stager_streamer.py"])
def test_dag_files_compose_only(name):
    """No environment read, no branching, no xcom_pull template: wiring only."""
    source = (DAGS / name).read_text()
    tree = ast.parse(source)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.If, ast.IfExp, ast.For, ast.While, ast.Try))]
    assert "environ" not in source and "getenv" not in source and "xcom_pull" not in source
