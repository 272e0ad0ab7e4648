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
