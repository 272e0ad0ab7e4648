"""The Kubernetes API subset of the Spark Operator path: SparkApplications (create, get, list,
delete, 409/404/422/401/403 as Status objects), the operator's status and the driver pod's log,
through the official ``kubernetes`` client and the cncf.kubernetes provider's ``KubernetesHook``;
and what kube-apiserver and the Spark Operator do that a lax stand-in would hide (issue 13): label
and field selectors, dryRun, pruning and fieldValidation, generateName, PUT/PATCH/status with
resourceVersion conflicts, finalizers, watch, deletecollection, the driver failing on a missing
main file, restart policies and SUBMISSION_FAILED ending FAILED.

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
    # the hook's own client watches it (what a watch-based sensor or trigger would do)
    from kubernetes import watch

    w = watch.Watch()
    first = next(
        iter(
            w.stream(
                hook.custom_object_client.list_namespaced_custom_object,
                GROUP,
                VERSION,
                NS,
                PLURAL,
                field_selector=f"metadata.name={name}",
                timeout_seconds=10,
            )
        )
    )
    w.stop()
    assert first["type"] == "ADDED" and first["object"]["metadata"]["uid"] == created["metadata"]["uid"]
    hook.delete_custom_object(GROUP, VERSION, PLURAL, name, namespace=NS)


# ---------------------------------------------------------------------------------------------
# kube-apiserver and Spark Operator behaviour the stand-in must share (issue 13). Applications
# whose main file does not exist keep these cheap: their driver fails at once, in a real cluster too.

MISSING_APP = "local:///nonexistent/cleanroom-contract/missing.py"


def quiet(kube, name, labels=None, **spec):
    m = manifest(kube, name)
    m["spec"]["mainApplicationFile"] = MISSING_APP
    m["spec"]["deps"] = {}
    m["metadata"]["labels"] = {**m["metadata"]["labels"], **(labels or {})}
    m["spec"].update(spec)
    return m


def wait_state(co, name, states=("COMPLETED", "FAILED"), timeout=300):
    deadline, seen, obj = time.monotonic() + timeout, [], None
    while time.monotonic() < deadline:
        obj = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        state = (obj.get("status") or {}).get("applicationState", {}).get("state")
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        if state in states:
            return obj, seen
        time.sleep(0.3)
    raise AssertionError(f"{name} never reached {states}: {seen}")


@pytest.fixture
def cleanup(kube):
    co = client.CustomObjectsApi(kube["api"])
    names: list[str] = []
    yield names
    for name in names:
        try:
            co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        except client.ApiException as exc:
            assert exc.status == 404


def test_label_and_field_selectors_filter_lists(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    run = uuid.uuid4().hex[:8]
    names = {}
    for tier, rank in (("a", "1"), ("b", "2"), ("c", "3")):
        name = f"ct-sel-{run}-{tier}"
        co.create_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, quiet(kube, name, {"ct-run": run, "tier": tier, "rank": rank})
        )
        cleanup.append(name)
        names[tier] = name

    def listed(label="", field=""):
        body = co.list_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            label_selector=f"ct-run={run}" + (f",{label}" if label else ""),
            field_selector=field,
        )
        return sorted(i["metadata"]["name"] for i in body["items"])

    assert listed() == sorted(names.values())
    assert listed("tier=a") == [names["a"]] == listed("tier==a")
    assert listed("tier!=a") == sorted([names["b"], names["c"]])
    assert listed("tier in (a, b)") == sorted([names["a"], names["b"]])
    assert listed("tier notin (a,b)") == [names["c"]]
    assert listed("tier") == sorted(names.values()) and listed("!tier") == []
    assert listed("!no-such-label") == sorted(names.values()) and listed("no-such-label") == []
    assert listed("no-such-label!=x") == sorted(names.values())  # != and notin match the label's absence
    assert listed("rank>1") == sorted([names["b"], names["c"]]) and listed("rank<2") == [names["a"]]
    assert listed(field=f"metadata.name={names['b']}") == [names["b"]]
    assert listed(field=f"metadata.name!={names['b']},metadata.namespace={NS}") == sorted([names["a"], names["c"]])
    assert listed(field="metadata.namespace=elsewhere") == []
    with pytest.raises(client.ApiException) as err:
        co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, field_selector="spec.type=Python")
    body = status_of(err.value)
    assert err.value.status == 400 and body["reason"] == "BadRequest"
    assert "field label not supported: spec.type" in body["message"]
    for bad in ("tier in (a", "tier=a b", "Bad Key=1", "tier=" + "x" * 64, "rank>abc"):
        with pytest.raises(client.ApiException) as err:
            co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector=bad)
        assert err.value.status == 400 and status_of(err.value)["reason"] == "BadRequest", bad
    with pytest.raises(client.ApiException) as err:
        co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, field_selector="metadata.name")
    assert err.value.status == 400 and status_of(err.value)["reason"] == "BadRequest"


def test_dry_run_validates_and_creates_nothing(kube):
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-dry-{uuid.uuid4().hex[:8]}"
    answered = co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, name), dry_run="All")
    assert answered["metadata"]["name"] == name and answered["metadata"]["uid"]
    assert answered["spec"]["mainApplicationFile"] == MISSING_APP and not answered.get("status")
    with pytest.raises(client.ApiException) as gone:
        co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert gone.value.status == 404
    listed = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, field_selector=f"metadata.name={name}")
    assert listed["items"] == []
    bad = quiet(kube, name)
    bad["spec"]["type"] = "Perl"  # still validated
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, bad, dry_run="All")
    assert err.value.status == 422 and status_of(err.value)["reason"] == "Invalid"
    # ValidateCreateOptions: only "All" is a dry run; anything else is 422 Invalid CreateOptions
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, name), dry_run="true")
    body = status_of(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid" and "dryRun" in body["message"]
    assert body["details"]["kind"] == "CreateOptions"
    with pytest.raises(client.ApiException) as gone:
        co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert gone.value.status == 404


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-prune-{uuid.uuid4().hex[:8]}"
    m = quiet(kube, name)
    m["spec"]["notAField"] = "x"
    m["spec"]["driver"]["alsoNot"] = 1
    m["metadata"]["notMeta"] = "y"
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, m, field_validation="Strict")
    body = status_of(err.value)
    assert err.value.status == 400 and body["reason"] == "BadRequest"
    assert (
        'unknown field "spec.notAField"' in body["message"] and 'unknown field "spec.driver.alsoNot"' in body["message"]
    )
    with pytest.raises(client.ApiException) as gone:
        co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert gone.value.status == 404
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, m, field_validation="Loose")
    assert err.value.status == 422 and "fieldValidation" in status_of(err.value)["message"]
    # the default (Warn): created, pruned, one Warning header per unknown field
    created, code, headers = co.create_namespaced_custom_object_with_http_info(GROUP, VERSION, NS, PLURAL, m)
    cleanup.append(name)
    assert code == 201
    assert "notAField" not in created["spec"] and "alsoNot" not in created["spec"]["driver"]
    assert "notMeta" not in created["metadata"]
    stored = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert "notAField" not in stored["spec"] and "alsoNot" not in stored["spec"]["driver"]
    warnings = " ".join(v for k, v in headers.items() if k.lower() == "warning")
    assert 'unknown field \\"spec.notAField\\"' in warnings and warnings.startswith("299 - ")
    # Ignore: pruned without a word
    name2 = f"ct-prune-{uuid.uuid4().hex[:8]}"
    m["metadata"]["name"] = name2
    created, code, headers = co.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, NS, PLURAL, m, field_validation="Ignore"
    )
    cleanup.append(name2)
    assert "notAField" not in created["spec"] and not [k for k in headers if k.lower() == "warning"]


def test_generate_name(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    m = quiet(kube, "unused")
    m["metadata"] = {"generateName": "ct-gen-", "labels": {"ct": "gen"}}
    created = co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, m)
    cleanup.append(created["metadata"]["name"])
    name = created["metadata"]["name"]
    assert (
        name.startswith("ct-gen-")
        and len(name) == len("ct-gen-") + 5
        and created["metadata"]["generateName"] == "ct-gen-"
    )
    assert (
        co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)["metadata"]["uid"]
        == created["metadata"]["uid"]
    )
    m["metadata"] = {"generateName": "Not_Valid-"}
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, m)
    assert err.value.status == 422 and "metadata.name" in status_of(err.value)["message"]


def test_update_patch_conflicts_and_the_status_subresource(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-upd-{uuid.uuid4().hex[:8]}"
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, name))
    cleanup.append(name)
    obj, _ = wait_state(co, name, ("FAILED",))  # the operator is done writing its status
    # merge patch: labels change, no spec change, generation kept
    patched = co.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, name, {"metadata": {"labels": {"patched": "yes"}}}
    )
    assert patched["metadata"]["labels"]["patched"] == "yes" and patched["metadata"]["generation"] == 1
    assert int(patched["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    # JSON patch: a spec change bumps generation; a failing test op refuses the whole patch
    patched = co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        PLURAL,
        name,
        [{"op": "replace", "path": "/spec/driver/memory", "value": "600m"}],
        _content_type="application/json-patch+json",
    )
    assert patched["spec"]["driver"]["memory"] == "600m" and patched["metadata"]["generation"] == 2
    with pytest.raises(client.ApiException) as err:
        co.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            PLURAL,
            name,
            [{"op": "test", "path": "/spec/type", "value": "Scala"}, {"op": "remove", "path": "/spec/image"}],
            _content_type="application/json-patch+json",
        )
    assert err.value.status == 422
    assert co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)["spec"]["image"]
    # strategic merge patch needs Go types: 415 for custom resources
    with pytest.raises(client.ApiException) as err:
        co.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name, {"spec": {}}, _content_type="application/strategic-merge-patch+json"
        )
    body = status_of(err.value)
    assert err.value.status == 415 and body["reason"] == "UnsupportedMediaType"
    # a patch carrying a stale resourceVersion is a failed precondition
    with pytest.raises(client.ApiException) as err:
        co.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name, {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}}
        )
    assert err.value.status == 409 and status_of(err.value)["reason"] == "Conflict"
    # PUT: the current resourceVersion wins, a stale one is 409, none is 422 (no unconditional update)
    current = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    stale = json.loads(json.dumps(current))
    current["spec"]["driver"]["memory"] = "700m"
    current["status"] = {"applicationState": {"state": "COMPLETED"}}  # the main resource ignores status
    replaced = co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, current)
    assert replaced["spec"]["driver"]["memory"] == "700m" and replaced["metadata"]["generation"] == 3
    assert replaced["status"]["applicationState"]["state"] == "FAILED"
    stale["spec"]["driver"]["memory"] = "800m"
    with pytest.raises(client.ApiException) as err:
        co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, stale)
    body = status_of(err.value)
    assert (
        err.value.status == 409 and body["reason"] == "Conflict" and "the object has been modified" in body["message"]
    )
    del stale["metadata"]["resourceVersion"]
    with pytest.raises(client.ApiException) as err:
        co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, stale)
    assert err.value.status == 422 and "metadata.resourceVersion" in status_of(err.value)["message"]
    with pytest.raises(client.ApiException) as err:
        co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"{name}-other", replaced)
    assert err.value.status in (400, 404)
    # /status: only the status changes, whatever else the body says
    status_body = {
        "metadata": {"labels": {"via-status": "ignored"}},
        "spec": {"driver": {"memory": "900m"}},
        "status": {"applicationState": {"state": "FAILED", "errorMessage": "set through /status"}},
    }
    after = co.patch_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, name, status_body)
    assert after["status"]["applicationState"]["errorMessage"] == "set through /status"
    assert after["spec"]["driver"]["memory"] == "700m" and "via-status" not in after["metadata"]["labels"]
    assert after["metadata"]["generation"] == 3
    current = co.get_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, name)
    current["status"]["applicationState"]["errorMessage"] = "replaced through /status"
    replaced = co.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, name, current)
    assert replaced["status"]["applicationState"]["errorMessage"] == "replaced through /status"
    with pytest.raises(client.ApiException) as err:
        co.replace_namespaced_custom_object_status(GROUP, VERSION, NS, PLURAL, name, current)  # now stale
    assert err.value.status == 409
    # dry-run update and delete change nothing
    fresh = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    fresh["spec"]["driver"]["memory"] = "1g"
    co.replace_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, fresh, dry_run="All")
    co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, dry_run="All")
    kept = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert kept["spec"]["driver"]["memory"] == "700m"
    assert kept["metadata"]["resourceVersion"] == replaced["metadata"]["resourceVersion"]
    # delete preconditions
    with pytest.raises(client.ApiException) as err:
        co.delete_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="0"))
        )
    assert err.value.status == 409 and status_of(err.value)["reason"] == "Conflict"


def test_watch_streams_added_modified_deleted_from_a_resource_version(kube):
    from kubernetes import watch

    co = client.CustomObjectsApi(kube["api"])
    run = uuid.uuid4().hex[:8]
    name = f"ct-watch-{run}"
    start_rv = co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector=f"ct-run={run}")["metadata"][
        "resourceVersion"
    ]
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, name, {"ct-run": run}))
    wait_state(co, name, ("FAILED",))
    co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    events = []
    w = watch.Watch()
    for event in w.stream(
        co.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NS,
        PLURAL,
        label_selector=f"ct-run={run}",
        resource_version=start_rv,
        timeout_seconds=20,
    ):
        state = ((event["object"].get("status") or {}).get("applicationState") or {}).get("state")
        events.append((event["type"], event["object"]["metadata"]["name"], state))
        if event["type"] == "DELETED":
            w.stop()
    kinds = [e[0] for e in events]
    assert kinds[0] == "ADDED" and kinds[-1] == "DELETED" and "MODIFIED" in kinds, events
    assert {e[1] for e in events} == {name}
    assert ("MODIFIED", name, "FAILED") in events
    # from now: the current objects as ADDED, nothing from other selectors
    other = f"ct-watch-{run}-b"
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, other, {"ct-run": run}))
    try:
        seen = []
        w = watch.Watch()
        for event in w.stream(
            co.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NS,
            PLURAL,
            label_selector=f"ct-run={run}",
            timeout_seconds=10,
        ):
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            w.stop()
        assert seen == [("ADDED", other)]
    finally:
        co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, other)


def test_delete_collection_by_label(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    run = uuid.uuid4().hex[:8]
    for i in range(2):
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, f"ct-dc-{run}-{i}", {"ct-run": run}))
        cleanup.append(f"ct-dc-{run}-{i}")
    co.delete_collection_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector=f"ct-run={run}")
    deadline = time.monotonic() + 60
    while co.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, label_selector=f"ct-run={run}")["items"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)


def test_a_missing_local_main_file_fails_the_driver_not_the_submission(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-nomain-{uuid.uuid4().hex[:8]}"
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, name))
    cleanup.append(name)
    obj, seen = wait_state(co, name, ("FAILED",))
    status = obj["status"]
    assert "SUBMISSION_FAILED" not in seen, seen
    assert status["submissionAttempts"] == 1 and status["executionAttempts"] == 1
    assert status["applicationState"]["errorMessage"].startswith("driver container failed with ExitCode: ")


def test_on_failure_restart_policy_reruns_the_driver(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-retry-{uuid.uuid4().hex[:8]}"
    policy = {"type": "OnFailure", "onFailureRetries": 1, "onFailureRetryInterval": 1}
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, quiet(kube, name, restartPolicy=policy))
    cleanup.append(name)
    deadline = time.monotonic() + 300
    while True:
        obj, seen = wait_state(co, name, ("FAILED",))
        if obj["status"].get("executionAttempts") == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert obj["status"]["executionAttempts"] == 2 and obj["status"]["submissionAttempts"] == 2, obj["status"]
    assert obj["status"]["applicationState"]["errorMessage"].startswith("driver container failed")


def test_submission_failed_is_not_final(kube, cleanup):
    """A submission spark-submit refuses (here: a Java application without a main class) ends FAILED:
    the operator retries SUBMISSION_FAILED as the restart policy says, then fails it."""
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-subfail-{uuid.uuid4().hex[:8]}"
    policy = {"type": "OnFailure", "onSubmissionFailureRetries": 1, "onSubmissionFailureRetryInterval": 1}
    m = quiet(kube, name, type="Java", restartPolicy=policy)
    m["spec"]["mainApplicationFile"] = "local:///nonexistent/cleanroom-contract/missing.jar"
    m["spec"].pop("pythonVersion", None)
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, m)
    cleanup.append(name)
    obj, seen = wait_state(co, name, ("FAILED", "COMPLETED"), timeout=300)
    assert obj["status"]["applicationState"]["state"] == "FAILED" and obj["status"]["applicationState"]["errorMessage"]
    if not REAL:  # the stand-in runs Python applications only: its submission of a Java one fails
        assert "SUBMISSION_FAILED" in seen, seen
    if "SUBMISSION_FAILED" in seen:
        assert obj["status"]["submissionAttempts"] == 2, obj["status"]  # one retry, then FAILED
        assert obj["status"]["applicationState"]["errorMessage"].startswith("failed to submit spark application")


def test_a_finalizer_holds_a_deleted_application_until_removed(kube, cleanup):
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-fin-{uuid.uuid4().hex[:8]}"
    m = quiet(kube, name)
    m["metadata"]["finalizers"] = ["contract.sdp/hold"]
    co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, m)
    cleanup.append(name)
    answered = co.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert answered["metadata"]["deletionTimestamp"]
    held = co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert held["metadata"]["deletionTimestamp"] and held["metadata"]["finalizers"] == ["contract.sdp/hold"]
    with pytest.raises(client.ApiException) as err:
        co.patch_namespaced_custom_object(
            GROUP, VERSION, NS, PLURAL, name, {"metadata": {"finalizers": ["contract.sdp/hold", "contract.sdp/more"]}}
        )
    assert err.value.status == 422 and "finalizers" in status_of(err.value)["message"]
    co.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name, {"metadata": {"finalizers": None}})
    deadline = time.monotonic() + 30
    while True:
        try:
            co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        except client.ApiException as exc:
            assert exc.status == 404
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_create_carrying_a_resource_version_is_refused(kube):
    co = client.CustomObjectsApi(kube["api"])
    name = f"ct-rv-{uuid.uuid4().hex[:8]}"
    m = quiet(kube, name)
    m["metadata"]["resourceVersion"] = "12345"
    with pytest.raises(client.ApiException) as err:
        co.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, m)
    assert err.value.status == 500 and "resourceVersion should not be set" in status_of(err.value)["message"]
    with pytest.raises(client.ApiException) as gone:
        co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    assert gone.value.status == 404
