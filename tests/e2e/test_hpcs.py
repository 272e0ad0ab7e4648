"""HPCS secure data preparation through a real Airflow, then the supercomputer's side.

The DAG runs from the REST API; the test then acts as a registered compute workload (its own
SPIRE agent for node cn01, a JWT-SVID for the workload's SPIFFE ID, a Vault login with the
info file's role), downloads the archive over SFTP, decrypts it with the crypt4gh CLI and
compares the tree with the input. It also checks who may not read the key, and that no secret
reached a task log, an XCom or a rendered template.
"""

from __future__ import annotations

import json
import os
import pwd
import uuid
from pathlib import Path

import pytest
import yaml

from include.hpcs.archive import sha512_file
from tests.integration.hpcs import compute_node as cn

DAG_ID = "hpcs_data_preparation"
TASKS = [
    "setup_spire_agent",
    "prepare",
    "svid",
    "vault",
    "workloads",
    "info_file",
    "ship",
    "teardown_spire_agent",
]


@pytest.fixture
def hpcs(airflow):
    extra = json.loads(airflow.api("GET", "/api/v2/connections/hpcs_server").json().get("extra") or "{}")
    var = airflow.api("GET", "/api/v2/variables/hpcs_svid_audience")
    audience = (var.json()["value"] if var.status_code == 200 else "") or extra.get("svid_audience") or "vault"
    local = Path(airflow.vars["SDP_LOCAL"])
    return {
        "audience": audience,
        "local": local,
        "staging": local / "staging",
        "hpcs_url": f"http://127.0.0.1:{airflow.vars['SDP_HPCS_PORT']}",
        "vault_url": f"http://127.0.0.1:{airflow.vars['SDP_VAULT_PORT']}",
        "spire_port": airflow.vars["SDP_SPIRE_PORT"],
        "sftp_port": airflow.vars["SDP_SUPERCOMPUTER_SFTP_PORT"],
        "sftp_root": local / "supercomputer_sftp" / "root",
        "sftp_key": local / "supercomputer_sftp" / "id_ed25519",
    }


def _secrets_absent(text: str, secrets: list[str]) -> list[str]:
    return [s[:12] + "..." for s in secrets if s and s in text]


def test_prepare_ship_and_read_as_a_compute_node(airflow, hpcs, tmp_path):
    name = f"ds-{uuid.uuid4().hex[:8]}"
    source = cn.make_input(hpcs["staging"] / name)
    me = pwd.getpwuid(os.getuid()).pw_name  # the compute workload below runs as this user
    remote_dir = f"/project/{name}"
    conf = {
        "input_path": name,
        "users": [me],
        "groups": [],
        "compute_nodes": ["cn01"],
        "path_at_rest": remote_dir,
    }

    result = airflow.run(DAG_ID, conf=conf, timeout=300)
    assert result.state == "success", result
    assert result.tasks == dict.fromkeys(TASKS, "success"), result.tasks

    prepared = result.xcom("prepare")
    info_x = result.xcom("info_file")["info"]["info"]
    setup = result.xcom("setup_spire_agent")
    assert prepared["archive_name"] == f"{name}.tar.gz.c4gh" and prepared["outside_links"] == ["outside-link"]
    assert result.xcom("vault")["written"] is True

    # the info file on the supercomputer: the HPCS format, checksum of the archive there
    remote = hpcs["sftp_root"] / remote_dir.lstrip("/")
    assert sorted(p.name for p in remote.iterdir()) == [f"{name}.info.yaml", f"{name}.tar.gz.c4gh"]
    info = yaml.safe_load((remote / f"{name}.info.yaml").read_text())["info"]
    assert info == info_x
    assert info["secret_path"] == f"client_{setup['client_id']}/{name}"
    assert info["access_role"] == f"client_{setup['client_id']}-{name}"

    # a registered compute workload: node cn01, this user -> the key
    node = cn.NodeAgent(tmp_path / "cn01", cn.node_token(hpcs["hpcs_url"], "cn01"), hpcs["spire_port"])
    try:
        jwt = node.jwt_svid(hpcs["audience"], subject=info["spiffeID"])
    finally:
        node.stop()
    login = cn.vault_login(hpcs["vault_url"], info["access_role"], jwt)
    assert login.status_code == 200, login.text
    read = cn.vault_read(hpcs["vault_url"], login.json()["auth"]["client_token"], info["secret_path"])
    assert read.status_code == 200, read.text
    key_pem = read.json()["data"]["data"]["key"]

    archive = tmp_path / "archive.c4gh"
    cn.sftp_download(hpcs["sftp_port"], hpcs["sftp_key"], info["path_at_rest"], archive)
    assert sha512_file(archive) == info["checksum"] == prepared["sha512"]
    restored = cn.decrypt_and_untar(archive, key_pem, tmp_path / "restored" / "tree")
    assert cn.tree_listing(restored / name) == cn.tree_listing(source)

    # the client's own identity may write the key but gets 403 reading it
    client_id, token = cn.client_token(hpcs["hpcs_url"])
    assert client_id == setup["client_id"]
    client = cn.NodeAgent(tmp_path / "client", token, hpcs["spire_port"])
    try:
        client_jwt = client.jwt_svid(hpcs["audience"])
    finally:
        client.stop()
    client_login = cn.vault_login(hpcs["vault_url"], f"client_{client_id}", client_jwt)
    assert client_login.status_code == 200, client_login.text
    client_token = client_login.json()["auth"]["client_token"]
    assert cn.vault_read(hpcs["vault_url"], client_token, info["secret_path"]).status_code == 403
    # an identity that was not registered for the secret is refused the role
    assert cn.vault_login(hpcs["vault_url"], info["access_role"], client_jwt).status_code in (400, 403)
    # a node that was not listed gets no identity for the secret at all
    other = cn.NodeAgent(tmp_path / "cn99", cn.node_token(hpcs["hpcs_url"], "cn99"), hpcs["spire_port"])
    try:
        with pytest.raises(Exception):  # noqa: B017 - the Workload API has no SVID for this caller
            other.jwt_svid(hpcs["audience"], subject=info["spiffeID"], timeout=5)
    finally:
        other.stop()

    # no secret in task logs, XComs or rendered templates
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    secrets = [key_body, jwt, client_jwt, login.json()["auth"]["client_token"], client_token]
    for task_id in TASKS:
        text = result.log(task_id) + json.dumps(result.xcom(task_id))
        ti = airflow.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{result.run_id}/taskInstances/{task_id}").json()
        text += json.dumps(ti.get("rendered_fields"))
        assert not _secrets_absent(text, secrets), f"secret material in {task_id}"
        assert "PRIVATE KEY" not in text and "eyJ" not in text, f"key or JWT-like text in {task_id}"
    assert "PRIVATE KEY" not in json.dumps(conf)

    # the scratch directory keeps no key material after the teardown
    scratch = Path(setup["scratch_dir"])
    assert not (scratch / "key" / "archive.sec").exists() and not (scratch / "svid" / "jwt").exists()


def test_rerun_of_the_same_run_writes_no_new_key_version(airflow, hpcs):
    name = f"rr-{uuid.uuid4().hex[:8]}"
    cn.make_input(hpcs["staging"] / name)
    conf = {
        "input_path": name,
        "users": ["root"],
        "compute_nodes": ["cn01"],
        "path_at_rest": f"/project/{name}",
        "compression": "none",
    }
    first = airflow.run(DAG_ID, conf=conf, timeout=300)
    assert first.state == "success", first
    resp = airflow.api(
        "POST",
        f"/api/v2/dags/{DAG_ID}/clearTaskInstances",
        json={"dag_run_id": first.run_id, "dry_run": False, "only_failed": False, "reset_dag_runs": True},
    )
    assert resp.status_code == 200, resp.text
    again = airflow.wait(DAG_ID, first.run_id, timeout=300)
    assert again.state == "success", again
    assert again.xcom("prepare")["reused"] is True
    assert again.xcom("prepare")["sha512"] == first.xcom("prepare")["sha512"]
    vault = again.xcom("vault")
    assert vault["written"] is False and vault["version"] == 1


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_bad_input_fails_without_retry(airflow, hpcs, case):
    name = f"bad-{case}-{uuid.uuid4().hex[:6]}"
    if case == "empty":
        (hpcs["staging"] / name).mkdir(parents=True)
    conf = {"input_path": name, "users": ["root"], "compute_nodes": ["cn01"], "path_at_rest": "/project/bad"}
    result = airflow.run(DAG_ID, conf=conf, timeout=240)
    assert result.state == "failed"
    assert result.tasks["prepare"] == "failed" and result.try_numbers.get("prepare", 1) == 1
    assert result.tasks["teardown_spire_agent"] == "success"
    log = result.log("prepare")
    assert ("does not exist" if case == "missing" else "is empty") in log


def test_invalid_names_refused_at_trigger(airflow):
    airflow.wait_for_dags([DAG_ID])
    resp = airflow.trigger(
        DAG_ID, {"input_path": "x", "users": ["Not Valid"], "compute_nodes": ["cn01"], "path_at_rest": "/p"}
    )
    assert resp.status_code == 400, resp.text
