"""airflow_settings.yaml: parsing, placeholders, malformed files, export for dag.test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack import settings as s

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
airflow:
  connections:
    - conn_id: db
      conn_type: postgres
      conn_host: 127.0.0.1
      conn_port: ${DB_PORT:-5432}
      conn_login: postgres
      conn_password: pw
      conn_schema: lega
      conn_extra: {sslmode: disable, root: "${SDP_LOCAL}/x"}
  pools:
    - {pool_name: p, pool_slot: 3, pool_description: a pool}
  variables:
    - {variable_name: v, variable_value: hello}
    - {variable_name: j, variable_value: {a: 1}}
"""


def test_parse_fills_placeholders_and_defaults():
    cfg = s.parse(GOOD, {"SDP_LOCAL": "/data"})
    (conn,) = cfg.connections
    assert conn.port == 5432 and conn.extra == {"sslmode": "disable", "root": "/data/x"}
    cfg = s.parse(GOOD, {"SDP_LOCAL": "/data", "DB_PORT": "6000"})
    assert cfg.connections[0].port == 6000
    assert cfg.pools == (("p", 3, "a pool"),)
    assert dict(cfg.variables) == {"v": "hello", "j": '{"a": 1}'}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("airflow: [1, 2", "not valid YAML"),
        ("- just a list", "top level must be a mapping"),
        ("airflow: {connectionz: []}", "unknown key(s) under 'airflow': connectionz"),
        ("airflow: {connections: [{conn_type: http}]}", "'conn_id' is required"),
        ("airflow: {connections: [{conn_id: a}]}", "connection 'a': 'conn_type' is required"),
        ("airflow: {connections: [{conn_id: a, conn_type: http, conn_port: abc}]}", "conn_port 'abc' is not a number"),
        ("airflow: {connections: [{conn_id: a, conn_type: http, conn_hots: x}]}", "unknown key(s) conn_hots"),
        ("airflow: {connections: [{conn_id: a, conn_type: http}, {conn_id: a, conn_type: http}]}", "defined twice"),
        ("airflow: {connections: [{conn_id: a, conn_type: http, conn_extra: '{bad'}]}", "conn_extra is not JSON"),
        ("airflow: {connections: [{conn_id: a, conn_type: http, conn_host: '${NOPE}'}]}", "${NOPE} is not set"),
        ("airflow: {pools: [{pool_name: p, pool_slot: -1}]}", "pool_slot must be a whole number"),
        ("airflow: {variables: [{variable_value: x}]}", "'variable_name' is required"),
    ],
)
def test_malformed_file_is_rejected_clearly(text, message):
    with pytest.raises(s.SettingsError) as err:
        s.parse(text, {}, source="f.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("f.yaml")


def test_project_settings_file_is_valid_and_names_systems_by_domain():
    cfg = s.load(ROOT / "airflow_settings.yaml")
    ids = {c.conn_id for c in cfg.connections}
    assert len(ids) == len(cfg.connections)
    assert "s3_archive" in ids
    for conn in cfg.connections:  # every path placeholder resolved to an absolute path
        for value in conn.extra.values():
            if isinstance(value, str) and "/.local" in value:
                assert value.startswith("/"), (conn.conn_id, value)


def test_export_files_are_what_dag_test_reads(tmp_path):
    from airflow.secrets.local_filesystem import load_connections_dict, load_variables

    cfg = s.parse(GOOD, {"SDP_LOCAL": "/data"})
    s.export_files(cfg, tmp_path / "c.json", tmp_path / "v.json")
    conns = load_connections_dict(str(tmp_path / "c.json"))
    conn = conns["db"]
    assert (conn.conn_type, conn.host, conn.port, conn.login, conn.password, conn.schema) == (
        "postgres", "127.0.0.1", 5432, "postgres", "pw", "lega")
    assert conn.extra_dejson == {"sslmode": "disable", "root": "/data/x"}
    assert load_variables(str(tmp_path / "v.json")) == {"v": "hello", "j": '{"a": 1}'}


def test_env_form_round_trips():
    cfg = s.parse(GOOD, {"SDP_LOCAL": "/data"})
    env = s.connection_env(cfg)
    assert json.loads(env["AIRFLOW_CONN_DB"])["extra"]["root"] == "/data/x"
    assert env["AIRFLOW_VAR_V"] == "hello"
