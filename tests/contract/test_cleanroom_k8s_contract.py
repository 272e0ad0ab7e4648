"""The Kubernetes API subset of the Spark Operator path: SparkApplications (create, get, list,
delete, 409/404/422/401/403 as Status objects), the operator's status and the driver pod's log,
through the official ``kubernetes`` client and the cncf.kubernetes provider's ``KubernetesHook``.

Against a real cluster with the Spark Operator when ``CLEANROOM_K8S_KUBECONFIG`` is set (a kubeconfig
path; ``CLEANROOM_K8S_NAMESPACE`` default ``cleanroom``, ``CLEANROOM_K8S_APP_FILE`` default the
image's ``local:///opt/spark/examples/src/main/python/pi.py``, ``CLEANROOM_K8S_FORBIDDEN_NAMESPACE``
default ``kube-system``). Otherwise against the devstack stand-in.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import yaml
from kubernetes import client, config

from include.cleanroom.manifest import GROUP, PLURAL, VERSION, build_spark_application

pytestmark = pytest.mark.contract
REAL = bool(os.environ.get("CLEANROOM_K8S_KUBECONFIG"))
NS = os.environ.get("CLEANROOM_K8S_NAMESPACE", "cleanroom")
FORBIDDEN_NS = os.environ.get("CLEANROOM_K8S_FORBIDDEN_NAMESPACE", "kube-system")


@pytest.fixture(scope="module")
def kube(devstack, tmp_path_factory):
    if REAL:
        path = os.environ["CLEANROOM_K8S_KUBECONFIG"]
        app = os.environ.get("CLEANROOM_K8S_APP_FILE", "local:///opt/spark/examples/src/main/python/pi.py")
        kubeconfig = yaml.safe_load(open(path))
    else:
        v = devstack.start("k8s_spark")
        app_file = tmp_path_factory.mktemp("k8s-app") / "hello.py"
        app_file.write_text("import sys\nprint('hello from the driver', sys.argv[1:])\n")
        app = f"local://{app_file}"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "t",
            "clusters": [{"name": "t", "cluster": {"server": f"http://127.0.0.1:{v['SDP_K8S_PORT']}"}}],
            "users": [{"name": "t", "user": {"token": "devstack-k8s-token"}}],
            "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": NS}}],
        }
    cfg = client.Configuration()
    config.load_kube_config_from_dict(kubeconfig, client_configuration=cfg)
    return {"api": client.ApiClient(cfg), "app": app, "kubeconfig": kubeconfig, "host": cfg.host}


def manifest(kube, name):
    return build_spark_application(
        name=name,
        namespace=NS,
        main_application_file=kube["app"],
        runtime_package_file=kube["app"],  # any file the driver can read: the test's app has no imports
        cgs_url="http://x",
        governance_key="eA==",
        contract_id="c1",
        run={"documentId": "q1", "runId": name, "datasets": {"visits_a": "file:///nowhere"}, "output": "/tmp/none"},
        driver_memory="512m",
        executor_memory="512m",
    )


def status_of(exc: client.ApiException) -> dict:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == exc.status
    return body


def test_application_runs_to_completion_with_status_and_driver_log(kube):
    co, core = client.CustomObjectsApi(kube["api"]), client.CoreV1Api(kube["api"])
    name = f"ct-{uuid.uuid4().hex[:8]}"
    created = co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, manifest(kube, name))
    meta = created["metadata"]
    assert meta["name"] == name and meta["namespace"] == NS and meta["uid"] and meta["resourceVersion"]
    try:
        with pytest.raises(client.ApiException) as dup:
            co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, manifest(kube, name))
        assert dup.value.status == 409 and status_of(dup.value)["reason"] == "AlreadyExists"
        listed = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
        assert name in [i["metadata"]["name"] for i in listed["items"]]
        seen, deadline = [], time.monotonic() + 600
        while time.monotonic() < deadline:
            obj = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
            state = (obj.get("status") or {}).get("applicationState", {}).get("state")
            if state and (not seen or seen[-1] != state):
                seen.append(state)
            if state in ("COMPLETED", "FAILED"):
                break
            time.sleep(0.5)
        assert seen[-1] == "COMPLETED", obj.get("status")
        status = obj["status"]
        assert status["driverInfo"]["podName"] and status["sparkApplicationId"] and status["terminationTime"]
        assert status["submissionAttempts"] >= 1 and status["executionAttempts"] >= 1
        if not REAL:  # the stand-in's driver prints; pi.py prints "Pi is roughly"
            log = core.read_namespaced_pod_log(status["driverInfo"]["podName"], NS)
            log = log.decode() if isinstance(log, bytes) else log
            assert "hello from the driver" in log and "--contract-id" in log
            assert core.read_namespaced_pod(status["driverInfo"]["podName"], NS).status.phase == "Succeeded"
    finally:
        co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    with pytest.raises(client.ApiException) as gone:
        co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert gone.value.status == 404 and status_of(gone.value)["reason"] == "NotFound"
    assert f'"{name}" not found' in status_of(gone.value)["message"]


def test_invalid_applications_are_refused(kube):
    co = client.CustomObjectsApi(kube["api"])
    bad = manifest(kube, f"ct-{uuid.uuid4().hex[:8]}")
    bad["spec"]["type"] = "Perl"
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, bad)
    body = status_of(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid" and "spec.type" in body["message"]
    bad = manifest(kube, f"ct-{uuid.uuid4().hex[:8]}")
    bad["metadata"]["name"] = "Not_Valid"
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, bad)
    assert err.value.status == 422 and "metadata.name" in status_of(err.value)["message"]


def test_credentials_and_namespaces_are_enforced(kube):
    anonymous = client.Configuration()
    anonymous.host = kube["host"]
    anonymous.verify_ssl = client.Configuration.get_default_copy().verify_ssl
    co_anon = client.CustomObjectsApi(client.ApiClient(anonymous))
    with pytest.raises(client.ApiException) as err:
        co_anon.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    assert err.value.status in ((401, 403) if REAL else (401,))
    co = client.CustomObjectsApi(kube["api"])
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(
            GROUP, VERSION, FORBIDDEN_NS, PLURAL, {**manifest(kube, "x1"), "metadata": {"name": "x1"}}
        )
    body = status_of(err.value)
    assert err.value.status == 403 and body["reason"] == "Forbidden" and "cannot create resource" in body["message"]


def test_the_providers_kubernetes_hook_works_with_it(kube, monkeypatch):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_CLEANROOM_K8S_CONTRACT",
        json.dumps({"conn_type": "kubernetes", "extra": {"kube_config": kube["kubeconfig"], "namespace": NS}}),
    )
    hook = KubernetesHook(conn_id="cleanroom_k8s_contract")
    name = f"ct-{uuid.uuid4().hex[:8]}"
    created = hook.create_custom_object(GROUP, VERSION, PLURAL, manifest(kube, name), namespace=NS)
    assert created["metadata"]["name"] == name
    assert (
        hook.get_custom_object(GROUP, VERSION, PLURAL, name, namespace=NS)["metadata"]["uid"]
        == created["metadata"]["uid"]
    )
    hook.delete_custom_object(GROUP, VERSION, PLURAL, name, namespace=NS)
