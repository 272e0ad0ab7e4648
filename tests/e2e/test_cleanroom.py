"""The confidential clean room through a real Airflow: cleanroom_create, cleanroom_prepare and
cleanroom_run triggered over the REST API against the governance and Kubernetes/Spark Operator
stand-ins, a real Spark run; then a run refused after a data owner revoked consent. No dataset key,
member token or cluster token may appear in a task log, an XCom or a rendered template."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.integration.cleanroom.support import MEMBER_TOKENS, make_sources

VOTERS = ["cleanroom_governance", "cleanroom_member_hospital_a", "cleanroom_member_hospital_b"]
CREATE = ["propose_contract", "vote", "await_acceptance"]
PREPARE = ["publish_datasets", "propose_query", "vote_query", "await_query_approval"]
RUN = ["check_runnable", "run_query", "collect_result", "audit_trail"]


def leaked(airflow, result, tasks, secrets: list[str]) -> list[str]:
    found = []
    for task_id in tasks:
        text = result.log(task_id) + json.dumps(result.xcom(task_id))
        ti = airflow.api("GET", f"/api/v2/dags/{result.dag_id}/dagRuns/{result.run_id}/taskInstances/{task_id}").json()
        text += json.dumps(ti.get("rendered_fields"))
        found += [f"{task_id}: {s[:6]}..." for s in secrets if s and s in text]
    return found


def test_create_prepare_run_then_refused_after_consent_is_revoked(airflow):
    local = Path(airflow.vars["SDP_LOCAL"])
    make_sources(local / "cleanroom" / "staging")
    cid, did = f"e2e-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"

    created = airflow.run("cleanroom_create", conf={"contract_id": cid, "voter_conn_ids": VOTERS}, timeout=240)
    assert created.state == "success", created.explain()
    assert created.tasks == dict.fromkeys(CREATE, "success")
    assert created.xcom("propose_contract")["required_voters"] == ["analyst", "hospital_a", "hospital_b"]

    prepared = airflow.run("cleanroom_prepare", conf={"contract_id": cid, "document_id": did}, timeout=240)
    assert prepared.state == "success", prepared.explain()
    assert prepared.tasks == dict.fromkeys(PREPARE, "success")
    assert prepared.xcom("propose_query")["approvers"] == ["hospital_a", "hospital_b"]

    run = airflow.run("cleanroom_run", conf={"contract_id": cid, "document_id": did}, timeout=420)
    assert run.state == "success", run.explain()
    assert run.tasks == dict.fromkeys(RUN, "success")
    result = run.xcom("collect_result")
    assert result["rows"] == 2 and result["suppressed_groups"] == 1
    with open(result["result_path"], newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["region"])
    assert [(r["region"], r["n"]) for r in rows] == [("north", "20"), ("south", "12")]
    assert "driver | clean room:" in run.log("collect_result")
    audit = run.xcom("audit_trail")
    assert audit["runtime_events"] == ["started", "completed"] and "secret_released" in audit["governance_actions"]

    # no secret anywhere: the dataset keys (in governance only), the members' tokens, the cluster token
    state = json.loads((local / "cleanroom_governance" / "state.json").read_text())
    keys = [s["value"] for s in state["secrets"][cid].values()]
    assert len(keys) == 2
    secrets = keys + list(MEMBER_TOKENS.values()) + ["devstack-k8s-token"]
    problems = (
        leaked(airflow, created, CREATE, secrets)
        + leaked(airflow, prepared, PREPARE, secrets)
        + leaked(airflow, run, RUN, secrets)
    )
    assert problems == []

    # hospital_b revokes its consent: the next run is refused at once, naming hospital_b, without retry
    cgs = f"http://127.0.0.1:{airflow.vars['SDP_CGS_PORT']}"
    hospital_b = {"Authorization": f"Bearer {MEMBER_TOKENS['hospital_b']}"}
    assert httpx.post(f"{cgs}/contracts/{cid}/disable", headers=hospital_b, timeout=10).status_code == 200
    try:
        refused = airflow.run("cleanroom_run", conf={"contract_id": cid, "document_id": did}, timeout=240)
        assert refused.state == "failed"
        assert refused.tasks["check_runnable"] == "failed" and refused.try_numbers.get("check_runnable", 1) == 1
        assert refused.tasks["run_query"] in ("upstream_failed", None)
        log = refused.log("check_runnable")
        assert "consent revoked" in log and "hospital_b" in log
    finally:
        httpx.post(f"{cgs}/contracts/{cid}/enable", headers=hospital_b, timeout=10)


@pytest.mark.parametrize(
    "dag_id,conf",
    [
        ("cleanroom_create", {"contract_id": "Not Valid"}),
        ("cleanroom_create", {"min_group_size": 1}),
        ("cleanroom_prepare", {"parties": [{"dataset": "visits_a"}]}),
        ("cleanroom_run", {"executor_memory": "lots"}),
    ],
)
def test_invalid_params_refused_at_trigger(airflow, dag_id, conf):
    airflow.wait_for_dags([dag_id])
    resp = airflow.trigger(dag_id, conf)
    assert resp.status_code == 400, resp.text
