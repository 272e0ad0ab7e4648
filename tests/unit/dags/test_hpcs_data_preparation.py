"""The DAG file: composition only, documented Params that reject bad input, setup/teardown wiring."""

import importlib
import sys
import time

import pytest


@pytest.fixture(scope="module")
def dag():
    import airflow.sdk  # noqa: F401 - Airflow itself is loaded before any DAG file is parsed

    import sensitive_data.operators.hpcs  # noqa: F401 - the plugin too (the DAG processor caches it)

    sys.modules.pop("hpcs_data_preparation", None)
    start = time.perf_counter()
    module = importlib.import_module("hpcs_data_preparation")
    assert time.perf_counter() - start < 1.0, "parsing the DAG file must take well under a second"
    return module.dag


def test_metadata(dag):
    assert dag.dag_id == "hpcs_data_preparation"
    assert dag.doc_md and "teardown" in dag.doc_md
    assert "hpcs" in dag.tags
    assert dag.default_args["owner"] == "hpcs"
    assert dag.schedule is None or str(dag.schedule) in ("None",)


def test_every_param_described(dag):
    for name, param in dag.params.items():
        p = dag.params.get_param(name)
        assert p.description, f"param {name} has no description"


def test_order_and_setup_teardown(dag):
    order = [
        "setup_spire_agent",
        "prepare",
        "svid",
        "vault",
        "workloads",
        "info_file",
        "ship",
        "teardown_spire_agent",
    ]
    for a, b in zip(order, order[1:], strict=False):
        assert b in dag.get_task(a).downstream_task_ids
    assert dag.get_task("setup_spire_agent").is_setup
    teardown = dag.get_task("teardown_spire_agent")
    assert teardown.is_teardown
    assert "setup_spire_agent" in teardown.upstream_task_ids


def _validate(dag, conf):
    import copy

    params = copy.deepcopy(dag.params)
    params.update(conf)
    return params.validate()


GOOD = {"input_path": "dataset", "users": ["alice"], "compute_nodes": ["cn01"], "path_at_rest": "/scratch/p"}


def test_good_conf_validates(dag):
    out = _validate(dag, GOOD)
    assert out["compression"] == "gzip" and out["secret_name"] == ""
    assert out["hpcs_server_conn_id"] == "hpcs_server"


@pytest.mark.parametrize(
    "bad",
    [
        {"users": ["Alice"]},
        {"groups": ["g r"]},
        {"compute_nodes": []},
        {"compute_nodes": ["CN-1"]},
        {"secret_name": "a/b"},
        {"path_at_rest": "relative/dir"},
        {"compression": "zstd"},
        {"input_path": ""},
    ],
)
def test_bad_conf_rejected(dag, bad):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        _validate(dag, {**GOOD, **bad})


def test_no_io_at_import(monkeypatch):
    import builtins

    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(f) or real_open(f, *a, **k))
    sys.modules.pop("hpcs_data_preparation", None)
    importlib.import_module("hpcs_data_preparation")
    assert [f for f in opened if "hpcs" in str(f) or "staging" in str(f)] == []


def test_data_flows_through_xcomargs(dag):
    """Each step takes the results it needs from the steps before it as ``.output`` XComArgs."""
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    expected = {
        "prepare": {"setup": "setup_spire_agent"},
        "svid": {"setup": "setup_spire_agent"},
        "vault": {"setup": "setup_spire_agent", "prepared": "prepare", "svid": "svid"},
        "workloads": {"setup": "setup_spire_agent", "prepared": "prepare", "svid": "svid"},
        "info_file": {"setup": "setup_spire_agent", "prepared": "prepare", "workloads": "workloads"},
        "ship": {"setup": "setup_spire_agent", "prepared": "prepare", "info": "info_file"},
        "teardown_spire_agent": {"setup": "setup_spire_agent"},
    }
    for task_id, args in expected.items():
        task = dag.get_task(task_id)
        for name, upstream in args.items():
            arg = getattr(task, name)
            assert isinstance(arg, PlainXComArg), f"{task_id}.{name} is not an XComArg"
            assert arg.operator.task_id == upstream and arg.key == "return_value"
            assert name in task.template_fields


def test_shared_retry_settings(dag):
    from sensitive_data.common.retries import RETRIES_SERVICE, ErrorRetryPolicy

    args = dag.default_args
    assert args["retries"] == RETRIES_SERVICE.retries and args["retry_delay"] == RETRIES_SERVICE.first_delay
    assert isinstance(args["retry_policy"], ErrorRetryPolicy) and args["retry_policy"].settings is RETRIES_SERVICE
    assert dag.get_task("prepare").retries == 1  # its own: a second archive run rarely helps


def test_dag_file_reads_no_environment():
    from pathlib import Path

    text = (Path(__file__).parents[3] / "dags" / "hpcs_data_preparation.py").read_text()
    assert "os.environ" not in text and "getenv" not in text and "import os" not in text


@pytest.mark.parametrize("configured,expected", [("hpcs-worker-1", "hpcs-worker-1"), ("", None)])
def test_queue_from_airflow_configuration(monkeypatch, configured, expected):
    """``[sensitive_data] hpcs_queue`` routes every HPCS task; unset: Airflow's default queue."""
    from airflow.sdk.configuration import conf

    monkeypatch.setenv("AIRFLOW__SENSITIVE_DATA__HPCS_QUEUE", configured)
    sys.modules.pop("hpcs_data_preparation", None)
    dag = importlib.import_module("hpcs_data_preparation").dag
    default = conf.get("operators", "default_queue")
    assert {t.queue for t in dag.tasks} == {expected or default}
    sys.modules.pop("hpcs_data_preparation", None)
