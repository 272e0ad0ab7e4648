"""The stager DAGs: composition, params, callbacks, retries."""

from __future__ import annotations

import importlib


def test_transfer_dag():
    dag = importlib.import_module("data_stager_transfer").dag
    assert set(dag.task_dict) == {"validate", "transfer"}
    assert dag.params["timeout"] == 259200 and dag.params["timeout_noprogress"] == 3600
    assert all(p.description for p in dag.params.values())
    transfer = dag.task_dict["transfer"]
    assert transfer.retries == 4 and transfer.retry_policy is not None
    assert dag.on_success_callback and dag.on_failure_callback
    assert dag.default_args["owner"] and dag.doc_md and dag.tags


def test_streamer_dag():
    dag = importlib.import_module("data_stager_streamer").dag
    assert set(dag.task_dict) == {"resolve", "submit"}
    assert dag.task_dict["submit"].trigger_dag_id == "data_stager_transfer"


def test_plugin_registers_the_api():
    from sensitive_data.plugin import SensitiveDataPlugin

    assert SensitiveDataPlugin.name == "sensitive_data"
    (entry,) = [a for a in SensitiveDataPlugin.fastapi_apps if a["url_prefix"] == "/stager"]
    paths = {r.path for r in entry["app"].routes}
    assert {"/v1/job", "/v1/jobs", "/v1/jobs/{state}", "/v1/job/{job_id}", "/v1/job/scheduled/{job_id}",
            "/v1/dac/project/{number}", "/v1/ping"} <= paths
