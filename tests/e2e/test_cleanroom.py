"""The confidential clean room through a real Airflow (REST API) against the governance and
Kubernetes/Spark Operator stand-ins and a real Spark: the hospitals accept the contract and keep
their analysis rules and auto-approval policies in governance with their own credentials; the
platform publishes and approves only through those policies; the allowed query equals an
independent pandas computation; the issue's attacks are refused naming the rule and leave no
patient id in any task log; a query over a dataset whose owner reviews queries itself waits for
that owner's ballot; a differencing pair exhausts the privacy budget. (The tampered
SparkApplication cannot be built through the DAGs, which build the manifest themselves; it is
submitted directly in tests/integration/cleanroom/test_pipeline.py.) No dataset key, member
token or cluster token appears in a task log, an XCom or a rendered template."""

from __future__ import annotations

import csv
import json
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.cleanroom.support import MEMBER_TOKENS, Owner, make_sources, owners_setup

CREATE = ["propose_contract", "vote", "await_acceptance"]
PREPARE = ["publish_datasets", "propose_query", "auto_approve", "await_query_approval"]
RUN = ["check_runnable", "run_query", "collect_result", "audit_trail"]
ATTACK_1 = "SELECT patient_id, region, age_band, visits, 100 AS n FROM visits_a"
ATTACK_2 = (
    "SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region HAVING "
    "`raise_error`(concat_ws('|', `reflect`('java.lang.System','getenv','HOME'), collect_list(patient_id))) IS NULL"
)
PATIENT_IDS = ("north-0", "south-0", "east-0", "west-0")


def leaked(airflow, result, tasks, secrets: list[str]) -> list[str]:
    found = []
    for task_id in tasks:
        text = result.log(task_id) + json.dumps(result.xcom(task_id))
        ti = airflow.api("GET", f"/api/v2/dags/{result.dag_id}/dagRuns/{result.run_id}/taskInstances/{task_id}").json()
        text += json.dumps(ti.get("rendered_fields"))
        found += [f"{task_id}: {s[:8]}..." for s in secrets if s and s in text]
    return found


def create(airflow, cgs: str, cid: str):
    """The analyst's DAG proposes and waits; each hospital accepts with its own client meanwhile."""
    airflow.wait_for_dags(["cleanroom_create"])
    airflow.unpause("cleanroom_create")
    resp = airflow.trigger("cleanroom_create", {"contract_id": cid})
    assert resp.status_code == 200, resp.text
    for hospital in ("hospital_a", "hospital_b"):
        Owner(cgs, hospital).accept_contract(cid)
    return airflow.wait("cleanroom_create", resp.json()["dag_run_id"], timeout=240)


def expected(local: Path) -> list[tuple[str, str, str]]:
    a = pd.read_csv(local / "cleanroom" / "staging" / "hospital_a" / "visits.csv")
    b = pd.read_csv(local / "cleanroom" / "staging" / "hospital_b" / "visits.csv")
    j = a.merge(b, on="patient_id", suffixes=("_a", "_b"))
    j["both"] = j.visits_a + j.visits_b
    g = j.groupby("region_a").agg(n=("patient_id", "nunique"), visits=("both", "sum"))
    return [(r, str(int(v.n)), str(int(v.visits))) for r, v in sorted(g[g.n >= 5].iterrows())]


def test_owners_rules_policies_and_attacks(airflow):
    local = Path(airflow.vars["SDP_LOCAL"])
    cgs = f"http://127.0.0.1:{airflow.vars['SDP_CGS_PORT']}"
    make_sources(local / "cleanroom" / "staging")
    cid, did = f"e2e-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"

    created = create(airflow, cgs, cid)
    assert created.state == "success", created.explain()
    assert created.tasks == dict.fromkeys(CREATE, "success")
    owners_setup(cgs, cid)

    prepared = airflow.run("cleanroom_prepare", conf={"contract_id": cid, "document_id": did}, timeout=240)
    assert prepared.state == "success", prepared.explain()
    assert prepared.tasks == dict.fromkeys(PREPARE, "success")
    assert sorted(v["member"] for v in prepared.xcom("auto_approve")["voted"]) == ["hospital_a", "hospital_b"]

    run = airflow.run("cleanroom_run", conf={"contract_id": cid, "document_id": did}, timeout=420)
    assert run.state == "success", run.explain()
    assert run.tasks == dict.fromkeys(RUN, "success")
    result = run.xcom("collect_result")
    assert result["rows"] == 2 and result["suppressed_groups"] == 1
    with open(result["result_path"], newline="") as fh:
        rows = sorted((r["region"], r["n"], r["visits"]) for r in csv.DictReader(fh))
    assert rows == expected(local)
    assert "driver |" not in run.log("run_query") + run.log("collect_result")  # no driver log in Airflow

    # no secret anywhere: the dataset keys (in governance only), the members' tokens, the cluster token
    state = json.loads((local / "cleanroom_governance" / "state.json").read_text())
    keys = [s["value"] for s in state["secrets"][cid].values()]
    secrets = keys + list(MEMBER_TOKENS.values()) + ["devstack-cgs-auto-hospital-a", "devstack-k8s-token"]
    problems = (
        leaked(airflow, created, CREATE, secrets)
        + leaked(airflow, prepared, PREPARE, secrets)
        + leaked(airflow, run, RUN, secrets)
    )
    assert problems == []

    # the attacks 1 and 2: refused at once, naming the rule; no patient id in any task log
    for query, rule in ((ATTACK_1, "identity"), (ATTACK_2, "function")):
        bad = airflow.run(
            "cleanroom_prepare",
            conf={"contract_id": cid, "document_id": f"bad-{uuid.uuid4().hex[:6]}", "query": query},
            timeout=240,
        )
        assert bad.state == "failed" and bad.tasks["propose_query"] == "failed"
        assert bad.try_numbers.get("propose_query", 1) == 1
        log = bad.log("propose_query")
        assert f"query refused [{rule}]" in log
        for task_id in PREPARE:
            text = bad.log(task_id) if bad.tasks.get(task_id) in ("success", "failed") else ""
            assert not [p for p in PATIENT_IDS if p in text], task_id


def test_query_waits_for_an_owners_own_ballot_and_budget_runs_out(airflow):
    """hospital_b reviews queries itself: the query waits (deferred) for its ballot. The owners ask
    for differential privacy (epsilon 1 per query, 1.5 in all): of a differencing pair of
    queries, the second is refused by the runtime, naming the exhausted budget."""
    local = Path(airflow.vars["SDP_LOCAL"])
    cgs = f"http://127.0.0.1:{airflow.vars['SDP_CGS_PORT']}"
    make_sources(local / "cleanroom" / "staging")
    cid = f"e2e-{uuid.uuid4().hex[:8]}"
    assert create(airflow, cgs, cid).state == "success"
    dp = {"epsilonPerQuery": 1.0, "totalBudget": 1.5, "bounds": {"visits": [0, 10]}}
    owners_setup(cgs, cid, dp=dp, auto=("hospital_a",))

    first, second = (f"q-{uuid.uuid4().hex[:8]}" for _ in range(2))
    queries = {
        first: "SELECT region, COUNT(*) AS n FROM visits_b GROUP BY region",
        second: "SELECT region, COUNT(*) AS n FROM visits_b WHERE age_band <> '20-29' GROUP BY region",
    }
    airflow.wait_for_dags(["cleanroom_prepare"])
    airflow.unpause("cleanroom_prepare")
    for did, query in queries.items():
        resp = airflow.trigger("cleanroom_prepare", {"contract_id": cid, "document_id": did, "query": query})
        assert resp.status_code == 200, resp.text
        run_id = resp.json()["dag_run_id"]
        waiting = wait_task(airflow, "cleanroom_prepare", run_id, "await_query_approval", "deferred")
        assert waiting == "deferred"  # waits for hospital_b, without a worker slot
        Owner(cgs, "hospital_b").vote_document(did)
        prepared = airflow.wait("cleanroom_prepare", run_id, timeout=240)
        assert prepared.state == "success", prepared.explain()
        assert prepared.xcom("auto_approve")["waiting_for"] == ["hospital_b"]

    ok = airflow.run("cleanroom_run", conf={"contract_id": cid, "document_id": first}, timeout=420)
    assert ok.state == "success", ok.explain()
    assert ok.xcom("collect_result")["epsilon"] == {"visits_b": 1.0}
    refused = airflow.run("cleanroom_run", conf={"contract_id": cid, "document_id": second}, timeout=420)
    assert refused.state == "failed" and refused.tasks["run_query"] == "failed"
    assert "[BudgetExhausted]" in refused.log("run_query")


def wait_task(airflow, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 180) -> str | None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        resp = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
        seen = resp.json().get("state") if resp.status_code == 200 else None
        if seen == state:
            return seen
        time.sleep(1)
    return seen


@pytest.mark.parametrize(
    "dag_id,conf",
    [
        ("cleanroom_create", {"contract_id": "Not Valid"}),
        ("cleanroom_create", {"min_group_size": 1}),
        ("cleanroom_prepare", {"sources": [{"dataset": "visits_a"}]}),
        ("cleanroom_run", {"run_timeout_minutes": 0}),
    ],
)
def test_invalid_params_refused_at_trigger(airflow, dag_id, conf):
    airflow.wait_for_dags([dag_id])
    resp = airflow.trigger(dag_id, conf)
    assert resp.status_code == 400, resp.text


def test_no_dag_lets_its_caller_choose_who_votes_or_publishes(airflow):
    for dag_id in ("cleanroom_create", "cleanroom_prepare", "cleanroom_run"):
        airflow.wait_for_dags([dag_id])
        params = airflow.api("GET", f"/api/v2/dags/{dag_id}/details").json()["params"]
        assert not [
            p for p in params if "conn" in p and p not in ("cleanroom_governance_conn_id", "kubernetes_conn_id")
        ]
        assert "voter_conn_ids" not in params and "parties" not in params
        assert all((v or {}).get("description") for v in params.values()), dag_id
