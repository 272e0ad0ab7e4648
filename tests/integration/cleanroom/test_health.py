"""platform_healthcheck's probes of the clean room's systems, against the stand-ins: what they report
when usable, and a plain refusal (never the token) when the credential is wrong."""

from __future__ import annotations

import json

import pytest

from sensitive_data.hooks import health

pytestmark = pytest.mark.integration


def test_governance_probe(cleanroom):
    assert health.probe_cleanroom_governance("cleanroom_governance") == (
        f"governance member analyst at {cleanroom.cgs_url}"
    )


def test_governance_probe_with_a_wrong_token(cleanroom, monkeypatch):
    conn = dict(cleanroom.conns["cleanroom_governance"], password="not-a-member-token")
    monkeypatch.setenv("AIRFLOW_CONN_CLEANROOM_GOVERNANCE", json.dumps(conn))
    with pytest.raises(RuntimeError) as err:
        health.probe_cleanroom_governance("cleanroom_governance")
    assert "not-a-member-token" not in str(err.value)
    assert "401" in str(err.value) or "refused" in str(err.value).lower()


def test_kubernetes_probe(cleanroom):
    assert health.probe_cleanroom_k8s("cleanroom_k8s").endswith("SparkApplication(s) in namespace cleanroom")


def test_kubernetes_probe_with_a_wrong_token(cleanroom, monkeypatch):
    from include.cleanroom.errors import CleanroomConfigError

    conn = json.loads(json.dumps(cleanroom.conns["cleanroom_k8s"]))
    conn["extra"]["kube_config"]["users"][0]["user"]["token"] = "wrong-token"
    monkeypatch.setenv("AIRFLOW_CONN_CLEANROOM_K8S", json.dumps(conn))
    with pytest.raises(CleanroomConfigError, match="Kubernetes refused listing SparkApplications in cleanroom") as err:
        health.probe_cleanroom_k8s("cleanroom_k8s")
    assert "wrong-token" not in str(err.value)
