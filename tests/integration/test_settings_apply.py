"""Applying airflow_settings.yaml to a real metadata database: idempotent, round-trips every entry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SETTINGS = """
airflow:
  connections:
    - {conn_id: c1, conn_type: postgres, conn_host: h, conn_port: 1, conn_login: u, conn_password: p,
       conn_schema: s, conn_extra: {a: "${SDP_LOCAL}/b"}}
    - {conn_id: c2, conn_type: http, conn_host: example.org}
  pools:
    - {pool_name: p1, pool_slot: 2, pool_description: two}
  variables:
    - {variable_name: v1, variable_value: one}
"""

DUMP = """
import json
from airflow.models import Connection, Pool, Variable
from airflow.utils.session import create_session
with create_session() as s:
    conns = {c.conn_id: [c.conn_type, c.host, c.port, c.login, c.password, c.schema, c.extra_dejson]
             for c in s.query(Connection)}
    pools = {p.pool: [p.slots, p.description] for p in s.query(Pool)}
    vars_ = {v.key: v.val for v in s.query(Variable)}
print(json.dumps({"c": conns, "p": pools, "v": vars_}))
"""


@pytest.fixture
def home(tmp_path):
    from cryptography.fernet import Fernet

    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/airflow.db",
           "SDP_LOCAL": "/data", "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    (tmp_path / "settings.yaml").write_text(SETTINGS)
    return env, tmp_path / "settings.yaml"


def _apply(env, path):
    res = subprocess.run([sys.executable, "-m", "devstack.settings", "apply", "--file", str(path)], env=env,
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _dump(env):
    res = subprocess.run([sys.executable, "-c", DUMP], env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_apply_is_idempotent_and_round_trips(home):
    env, path = home
    assert "(4 changed)" in _apply(env, path)
    first = _dump(env)
    assert first["c"]["c1"] == ["postgres", "h", 1, "u", "p", "s", {"a": "/data/b"}]
    assert first["c"]["c2"][:2] == ["http", "example.org"]
    assert first["p"]["p1"] == [2, "two"]
    assert first["v"] == {"v1": "one"}
    assert "(0 changed)" in _apply(env, path)
    assert _dump(env) == first
    path.write_text(SETTINGS.replace("pool_slot: 2", "pool_slot: 5").replace("conn_port: 1", "conn_port: 2"))
    assert "(2 changed)" in _apply(env, path)
    after = _dump(env)
    assert after["p"]["p1"][0] == 5 and after["c"]["c1"][2] == 2


def test_apply_refuses_malformed_file_and_changes_nothing(home):
    env, path = home
    path.write_text("airflow: {connections: [{conn_id: x}]}")
    res = subprocess.run([sys.executable, "-m", "devstack.settings", "apply", "--file", str(path)], env=env,
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 2
    assert "connection 'x': 'conn_type' is required" in res.stderr
    assert "x" not in _dump(env)["c"]
