"""The platform itself, driven through the REST API of a real Airflow."""

from __future__ import annotations

import pytest

from devstack.settings import load as load_settings
from sensitive_data.healthchecks import HEALTHCHECKS


def test_healthcheck_succeeds(airflow):
    result = airflow.run("platform_healthcheck", timeout=240)
    assert result.state == "success", result.explain()
    secrets = {c.password for c in load_settings(variables={**airflow.vars}).connections if c.password}
    secrets -= {"guest"}  # RabbitMQ's default user name is also its password
    assert {"devstack-lega", "devstack-secret", "devstack-root-token", "streamer-secret"} <= secrets
    for task in result.tasks:
        log = result.log(task)
        assert [s for s in secrets if s in log] == [], task
    assert set(result.tasks) == {c.name for c in HEALTHCHECKS}
    assert set(result.tasks.values()) == {"success"}
    assert "OK" in result.log(HEALTHCHECKS[0].name)


def test_healthcheck_reports_a_broken_system_plainly(airflow):
    """A system that is down fails its task with a message naming the system and what to do."""
    check = HEALTHCHECKS[0]  # the S3 endpoint: point it at a closed port
    original = airflow.api("GET", f"/api/v2/connections/{check.conn_id}").json()
    broken = {**original, "extra": original["extra"].replace(f":{airflow.vars['SDP_S3_PORT']}", ":1")}
    assert broken["extra"] != original["extra"]
    only_extra = {"update_mask": "extra"}  # leave the (redacted) password alone
    resp = airflow.api("PATCH", f"/api/v2/connections/{check.conn_id}", json=broken, params=only_extra)
    assert resp.status_code == 200, resp.text
    try:
        result = airflow.run("platform_healthcheck", conf={"systems": [check.name]}, timeout=240)
        assert result.state == "failed"
        log = result.log(check.name)
        assert check.system in log and "is not usable" in log and "What to do" in log
        assert "devstack-secret" not in log
    finally:
        resp = airflow.api("PATCH", f"/api/v2/connections/{check.conn_id}", json=original, params=only_extra)
        assert resp.status_code == 200, resp.text


def test_wrong_password_gets_401(airflow):
    assert airflow.get_token("admin", "not-the-password").status_code == 401
    assert airflow.get_token("nobody", "x").status_code == 401


def test_unauthenticated_api_call_refused(airflow):
    resp = airflow._client.get("/api/v2/dags")
    assert resp.status_code in (401, 403)


def test_conf_failing_params_is_refused(airflow):
    airflow.wait_for_dags(["platform_healthcheck"])
    resp = airflow.trigger("platform_healthcheck", {"systems": ["no_such_system"]})
    assert resp.status_code == 400, resp.text
    assert "systems" in resp.text or "no_such_system" in resp.text
    resp = airflow.trigger("platform_healthcheck", {"systems": []})
    assert resp.status_code == 400, resp.text


@pytest.mark.parametrize("dag_id", ["platform_healthcheck"])
def test_dag_is_listed_with_its_docs(airflow, dag_id):
    airflow.wait_for_dags([dag_id])
    details = airflow.api("GET", f"/api/v2/dags/{dag_id}/details").json()
    assert details["doc_md"] and "platform" in details["owners"]
