"""The Kubernetes/Spark Operator stand-in's rules that a contract test cannot reach on a shared cluster:
the selector grammar, pruning, JSON/merge patches, a watch from a compacted resourceVersion (410),
and the operator's retries of a failed submission (devstack/k8s_spark)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devstack.k8s_spark import pruning, selectors
from devstack.k8s_spark.server import JsonPatchError, K8sSpark, Token, json_patch, merge_patch

BASE = "/apis/sparkoperator.k8s.io/v1beta2/namespaces/cr/sparkapplications"
AUTH = {"Authorization": "Bearer t"}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=1", {"a": "1"}, True),
        ("a==1", {"a": "2"}, False),
        ("a!=1", {}, True),
        ("a!=1", {"a": "1"}, False),
        ("a in (1, 2),b", {"a": "2", "b": ""}, True),
        ("a notin (1,2)", {}, True),
        ("a notin (1,2)", {"a": "1"}, False),
        ("!a", {"a": "x"}, False),
        ("a", {"a": ""}, True),
        ("a>5", {"a": "6"}, True),
        ("a<5", {"a": "x"}, False),
        ("example.com/tier=x", {"example.com/tier": "x"}, True),
        ("a=", {"a": ""}, True),
        ("a in ()", {"a": ""}, True),
        ("", {"z": "1"}, True),
    ],
)
def test_label_selectors_match_as_labels_parse_does(selector, labels, expected):
    assert selectors.labels_match(selectors.parse_labels(selector), labels) is expected


@pytest.mark.parametrize(
    "selector",
    ["a in (1", "a b", "a=1,", "=1", "a>x", "Bad Key", "a=" + "v" * 64, "a=-x", "a notin 1", "UPPER_/x=1", "!a=1"],
)
def test_label_selectors_the_api_server_refuses(selector):
    with pytest.raises(selectors.SelectorError):
        selectors.parse_labels(selector)


def test_field_selectors_know_only_name_and_namespace():
    reqs = selectors.parse_fields(r"metadata.name=a\,b,metadata.namespace!=x")
    assert reqs == [("metadata.name", "=", "a,b"), ("metadata.namespace", "!=", "x")]
    assert selectors.fields_match(reqs, {"metadata.name": "a,b", "metadata.namespace": "y"}.get)
    with pytest.raises(selectors.SelectorError, match="field label not supported: spec.type"):
        selectors.parse_fields("spec.type=Python")
    with pytest.raises(selectors.SelectorError, match="can't understand"):
        selectors.parse_fields("metadata.name")


def test_pruning_follows_the_structural_schema():
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                    "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }
        },
    }
    obj = {
        "apiVersion": "v",
        "kind": "K",
        "metadata": {"name": "n", "bogus": 1},
        "spec": {"list": [{"a": "x", "b": 1}], "map": {"k": {"z": 1}}, "free": {"anything": 1}, "extra": 2},
        "top": 3,
    }
    dropped = pruning.prune(obj, schema, root=True)
    assert sorted(dropped) == ["metadata.bogus", "spec.extra", "spec.list[0].b", "spec.map.k.z", "top"]
    assert obj == {
        "apiVersion": "v",
        "kind": "K",
        "metadata": {"name": "n"},
        "spec": {"list": [{"a": "x"}], "map": {"k": {}}, "free": {"anything": 1}},
    }


def test_merge_and_json_patches():
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    doc = {"a": [1, 2], "b": {"c": "x"}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "move", "from": "/b/c", "path": "/d"},
            {"op": "test", "path": "/d", "value": "x"},
            {"op": "replace", "path": "/a/0", "value": 0},
        ],
    )
    assert out == {"a": [0, 2, 3], "b": {}, "d": "x"} and doc == {"a": [1, 2], "b": {"c": "x"}}
    with pytest.raises(JsonPatchError) as err:
        json_patch(doc, [{"op": "remove", "path": "/nope"}])
    assert not err.value.malformed
    with pytest.raises(JsonPatchError) as err:
        json_patch(doc, {"op": "remove"})
    assert err.value.malformed


def manifest(name: str, **spec) -> dict:
    return {
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": name},
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "sparkVersion": "4.0.1",
            "mainApplicationFile": "local:///nonexistent/app.py",
            "driver": {},
            "executor": {},
            **spec,
        },
    }


def with_server(tmp_path: Path, body):
    async def main():
        server = K8sSpark(tmp_path, [Token("t=u@cr")], spark_submit="/bin/true")
        async with TestClient(TestServer(server.app())) as c:
            await body(server, c)

    asyncio.run(main())


async def final(c: TestClient, name: str, states=("FAILED", "COMPLETED")) -> tuple[dict, list[str]]:
    seen: list[str] = []
    for _ in range(200):
        obj = await (await c.get(f"{BASE}/{name}", headers=AUTH)).json()
        state = ((obj.get("status") or {}).get("applicationState") or {}).get("state")
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        if state in states:
            return obj, seen
        await asyncio.sleep(0.05)
    raise AssertionError(seen)


def test_submission_failed_is_retried_as_the_restart_policy_says_then_failed(tmp_path):
    async def body(server, c):
        r = await c.post(BASE, json=manifest("never", type="Scala"), headers=AUTH)
        assert r.status == 201
        obj, _ = await final(c, "never")
        states = [
            ((e[3].get("status") or {}).get("applicationState") or {}).get("state")
            for e in server.history
            if e[3]["metadata"]["name"] == "never"
        ]
        assert states == [None, "SUBMISSION_FAILED", "FAILED"] and obj["status"]["submissionAttempts"] == 1
        assert obj["status"]["applicationState"]["errorMessage"].startswith("failed to submit spark application")
        policy = {"type": "OnFailure", "onSubmissionFailureRetries": 2, "onSubmissionFailureRetryInterval": 1}
        await c.post(BASE, json=manifest("twice", type="Scala", restartPolicy=policy), headers=AUTH)
        obj, seen = await final(c, "twice")
        assert obj["status"]["submissionAttempts"] == 3 and "executionAttempts" not in obj["status"]

    with_server(tmp_path, body)


def test_a_watch_from_a_compacted_resource_version_is_410_expired(tmp_path):
    async def body(server, c):
        await c.post(BASE, json=manifest("w1", type="Scala"), headers=AUTH)
        await final(c, "w1")
        rv = server.resource_version
        server.history_start = rv - 1  # as if compacted
        r = await c.get(BASE, params={"watch": "true", "resourceVersion": str(rv - 2)}, headers=AUTH)
        events = [json.loads(line) for line in (await r.text()).splitlines()]
        assert events[0]["type"] == "ERROR" and events[0]["object"]["code"] == 410
        assert events[0]["object"]["reason"] == "Expired"
        r = await c.get(
            BASE, params={"watch": "true", "resourceVersion": str(rv - 1), "timeoutSeconds": "1"}, headers=AUTH
        )
        events = [json.loads(line) for line in (await r.text()).splitlines()]
        assert [e["object"]["metadata"]["resourceVersion"] for e in events] == [str(rv)]

    with_server(tmp_path, body)
