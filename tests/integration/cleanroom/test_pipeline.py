"""The clean room's operators against the stand-ins and a real pyspark: create -> owners' rules and
policies -> prepare -> run, and every refusal: the issue's three attacks (named by the rule that
refuses them, at proposal and again in the runtime), a query waiting for an owner's own ballot,
publishing without the owner's policy, revoked consent, a tampered SparkApplication that gets no
key, an unattested caller, an answer not signed by the pinned governance."""

from __future__ import annotations

import base64
import csv
import json
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .support import (
    DATASETS,
    MEMBER_TOKENS,
    QUERY,
    Owner,
    make_sources,
    owners_setup,
    run_task,
    wait_application,
)

pytestmark = pytest.mark.integration
ATTACK_1 = "SELECT patient_id, region, age_band, visits, 100 AS n FROM visits_a"
ATTACK_2 = (
    "SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region HAVING "
    "`raise_error`(concat_ws('|', `reflect`('java.lang.System','getenv','HOME'), collect_list(patient_id))) IS NULL"
)


def gov_ops():
    from sensitive_data.operators import cleanroom_governance

    return cleanroom_governance


def spark_ops():
    from sensitive_data.operators import cleanroom_spark

    return cleanroom_spark


def member(name):
    return {"Authorization": f"Bearer {MEMBER_TOKENS[name]}"}


def create(cr, contract_id, hospitals=("hospital_a", "hospital_b"), timeout_minutes=10):
    """The analyst proposes and votes (its own member); each hospital votes with its own client."""
    o = gov_ops()
    store: dict = {}
    run_task(
        o.CleanroomProposeContractOperator(
            task_id="propose_contract",
            contract_id=contract_id,
            members=["analyst", "hospital_a", "hospital_b"],
            datasets=DATASETS,
            min_group_size=5,
        ),
        store,
    )
    run_task(o.CleanroomVoteOperator(task_id="vote", kind="contract", target_id=contract_id), store)
    for h in hospitals:
        Owner(cr.cgs_url, h).accept_contract(contract_id)
    await_op = o.CleanroomAwaitAcceptanceOperator(
        task_id="await_acceptance",
        kind="contract",
        target_id=contract_id,
        acceptance_timeout_minutes=timeout_minutes,
        poll_interval=0.2,
    )
    return run_task(await_op, store)


def publish(cr, contract_id):
    make_sources(cr.staging)
    return run_task(
        gov_publish_op(cr, contract_id, [{"dataset": d, "source": f"{o}/visits.csv"} for d, o in OWNED]), {}
    )


OWNED = (("visits_a", "hospital_a"), ("visits_b", "hospital_b"))


def gov_publish_op(cr, contract_id, sources):
    from sensitive_data.operators.cleanroom_datasets import CleanroomPublishDatasetsOperator

    return CleanroomPublishDatasetsOperator(
        task_id="publish_datasets",
        contract_id=contract_id,
        sources=sources,
        storage_dir=str(cr.storage),
        staging_dir=str(cr.staging),
    )


def propose(contract_id, document_id, query=QUERY):
    o = gov_ops()
    run_task(
        o.CleanroomProposeQueryOperator(
            task_id="propose_query", contract_id=contract_id, document_id=document_id, query=query
        ),
        {},
    )
    return run_task(o.CleanroomAutoApproveOperator(task_id="auto_approve", document_id=document_id), {})


def await_document(document_id, timeout_minutes=10):
    return run_task(
        gov_ops().CleanroomAwaitAcceptanceOperator(
            task_id="await_query_approval",
            kind="document",
            target_id=document_id,
            poll_interval=0.2,
            acceptance_timeout_minutes=timeout_minutes,
        ),
        {},
    )


def check_op(cr, contract_id, document_id):
    return gov_ops().CleanroomCheckRunnableOperator(
        task_id="check_runnable", contract_id=contract_id, document_id=document_id, storage_dir=str(cr.storage)
    )


def run(cr, contract_id, document_id, run_id="manual__2026-01-01T00:00:00+00:00"):
    store: dict = {}
    check = run_task(check_op(cr, contract_id, document_id), store, run_id)
    op = spark_ops().CleanroomSparkRunOperator(
        task_id="run_query",
        contract_id=contract_id,
        document_id=document_id,
        runnable=check,
        output_dir=str(cr.output),
        poll_interval=0.5,
    )
    return run_task(op, store, run_id), check


def expected_by_pandas(cr) -> list[dict]:
    """The demo query computed independently over the plaintext, k = 5 distinct patients per group."""
    a = pd.read_csv(cr.staging / "hospital_a" / "visits.csv")
    b = pd.read_csv(cr.staging / "hospital_b" / "visits.csv")
    j = a.merge(b, on="patient_id", suffixes=("_a", "_b"))
    j["both"] = j.visits_a + j.visits_b
    g = j.groupby("region_a").agg(n=("patient_id", "nunique"), visits=("both", "sum"))
    g = g[g.n >= 5]
    return [{"region": r, "n": str(int(v.n)), "visits": str(int(v.visits))} for r, v in sorted(g.iterrows())]


@pytest.fixture(scope="module")
def collaboration(cleanroom):
    """An accepted contract whose owners keep their rules and registered auto-approval and publishing."""
    cid = f"c-{uuid.uuid4().hex[:8]}"
    assert create(cleanroom, cid)["state"] == "Accepted"
    owners_setup(cleanroom.cgs_url, cid)
    publish(cleanroom, cid)
    return cid


def test_create_prepare_run_equals_pandas(cleanroom, collaboration):
    cr, cid = cleanroom, collaboration
    did = f"q-{uuid.uuid4().hex[:8]}"
    auto = propose(cid, did)
    assert sorted(v["member"] for v in auto["voted"]) == ["hospital_a", "hospital_b"] and not auto["waiting_for"]
    assert await_document(did)["state"] == "Accepted"
    # the ballots were cast by the owners' automation, recorded as theirs
    events = governance_events(cr, cid)
    votes = [e for e in events if e["action"] == "document_vote" and e["documentId"] == did]
    assert {(v["memberId"], v["via"]) for v in votes} == {("hospital_a", "automation"), ("hospital_b", "automation")}

    # the sealed files hold no plaintext
    sealed = (cr.storage / "hospital_a" / cid / "visits_a.sealed").read_bytes()
    assert b"north-000" not in sealed and sealed.startswith(b"SDPCRDS1")

    started = time.monotonic()
    result, check = run(cr, cid, did)
    print(f"spark run: {time.monotonic() - started:.1f}s")
    summary = result["summary"]
    assert summary["status"] == "completed" and summary["suppressedGroups"] == 1 and summary["rows"] == 2
    collected = run_task(spark_ops().CleanroomCollectResultOperator(task_id="collect_result", run=result), {})
    with open(collected["result_path"], newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["region"])
    assert rows == expected_by_pandas(cr)
    audit = run_task(
        gov_ops().CleanroomAuditTrailOperator(task_id="audit_trail", contract_id=cid, document_id=did, run=result), {}
    )
    assert audit["runtime_events"] == ["started", "completed"]
    assert {"document_accepted", "secret_released", "document_released"} <= set(audit["governance_actions"])

    # a retried run task finds the finished application instead of starting another one
    again, _ = run(cr, cid, did)
    assert again["application"] == result["application"]

    # the dataset keys appear nowhere but in governance
    state = json.loads((Path(cr.vars["SDP_LOCAL"]) / "cleanroom_governance" / "state.json").read_text())
    text = json.dumps([result, check, collected, audit, summary])
    for value in (s["value"] for s in state["secrets"][cid].values()):
        assert value not in text and base64.b64decode(value).hex() not in text


def governance_events(cr, cid) -> list[dict]:
    resp = requests.get(
        f"{cr.cgs_url}/contracts/{cid}/events",
        params={"scope": "governance", "id": cid, "from_seqno": 1},
        headers=member("analyst"),
        timeout=10,
    )
    return [e["data"] for e in resp.json()["value"]]


@pytest.mark.parametrize(
    "query,rule",
    [
        (ATTACK_1, "identity"),
        (ATTACK_2, "function"),
        ("SELECT region, COUNT(*) OVER () AS n FROM visits_a", None),
        ("SELECT region, collect_list(patient_id) AS ids FROM visits_a GROUP BY region", None),
        ("SELECT region, min(patient_id) AS p FROM visits_a GROUP BY region", None),
        ("SELECT region, 100 AS n FROM visits_a UNION ALL SELECT region, 1 AS n FROM visits_b", None),
    ],
)
def test_attacks_are_refused_at_proposal_naming_the_rule(cleanroom, collaboration, query, rule):
    did = f"bad-{uuid.uuid4().hex[:6]}"
    with pytest.raises(AirflowFailException, match=r"query refused \[(\w+)\]") as err:
        run_task(
            gov_ops().CleanroomProposeQueryOperator(
                task_id="p", contract_id=collaboration, document_id=did, query=query
            ),
            {},
        )
    if rule:
        assert f"[{rule}]" in str(err.value)
    assert "north-0" not in str(err.value)
    resp = requests.get(f"{cleanroom.cgs_url}/userdocuments/{did}", headers=member("analyst"), timeout=10)
    assert resp.status_code == 404  # nothing reached governance


def test_the_runtime_refuses_an_attack_that_bypassed_the_platform(cleanroom, collaboration, caplog):
    """The analyst writes the raise_error document straight into governance and both owners accept
    it by hand: the runtime's own check refuses it, naming the rule, and no patient id leaves."""
    cr, cid = cleanroom, collaboration
    did = f"q-{uuid.uuid4().hex[:8]}"
    data = {
        "kind": "sdp.cleanroom.spark-sql/v1",
        "query": ATTACK_2,
        "datasets": [d | {"format": "csv"} for d in DATASETS if d["name"] == "visits_a"],
        "minGroupSize": 5,
    }
    analyst = requests.Session()
    analyst.headers.update(member("analyst"))
    body = {"contractId": cid, "data": data, "approvers": [{"approverId": "hospital_a", "approverIdType": "member"}]}
    assert analyst.put(f"{cr.cgs_url}/userdocuments/{did}", json=body, timeout=10).status_code == 200
    version = analyst.get(f"{cr.cgs_url}/userdocuments/{did}", timeout=10).json()["version"]
    assert analyst.post(f"{cr.cgs_url}/userdocuments/{did}/propose", json={"version": version}).status_code == 200
    Owner(cr.cgs_url, "hospital_a").vote_document(did)
    # the platform's own check refuses it too, but we go past it to the clean room
    with pytest.raises(AirflowFailException, match=r"\[function\]"):
        run_task(check_op(cr, cid, did), {})
    name = f"bypass-{uuid.uuid4().hex[:6]}"
    obj, summary = submit_direct(cr, cid, did, name, only=("visits_a",))
    assert obj["status"]["applicationState"]["state"] == "FAILED"
    assert summary["status"] == "refused" and summary["code"] == "function", summary
    op = spark_ops().CleanroomSparkRunOperator(
        task_id="run_query", contract_id=cid, document_id=did, runnable={}, output_dir=str(cr.output)
    )
    with pytest.raises(AirflowFailException, match=r"refused the run: \[function\]") as err:
        op.execute_complete({}, {"status": "done", "state": "FAILED"}, application=summary["_application"])
    everything = str(err.value) + json.dumps(summary) + caplog.text
    assert "north-0" not in everything and "west-0" not in everything


def submit_direct(cr, cid, did, name, tamper=None, only=None):
    """A SparkApplication submitted past the DAG's checks (optionally tampered with): the clean room
    must refuse by itself. Returns the final object and the job's summary."""
    from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook
    from sensitive_data.hooks.cleanroom_k8s import CleanroomSparkHook
    from sensitive_data.operators.cleanroom_base import runtime_setup

    k8s, gov = CleanroomSparkHook(), CleanroomGovernanceHook()
    output = cr.output / name
    datasets = {d: (cr.storage / o / cid / f"{d}.sealed").as_uri() for d, o in OWNED if not only or d in only}
    manifest = runtime_setup(
        k8s,
        gov,
        cid,
        gov.service_identity(),
        {"documentId": did, "runId": name, "datasets": datasets, "output": str(output)},
    )
    manifest["metadata"]["name"] = name
    if tamper:
        tamper(manifest["spec"])
    k8s.submit(manifest)
    obj = wait_application(k8s, name)
    summary = json.loads((output / "summary.json").read_text()) if (output / "summary.json").exists() else {}
    summary["_application"] = {"name": name, "namespace": "cleanroom", "output": str(output)}
    return obj, summary


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(
            lambda s: s["driver"].setdefault("env", []).append({"name": "PYTHONPATH", "value": "/tmp"}), id="env"
        ),
        pytest.param(lambda s: s["sparkConf"].update({"spark.driver.extraClassPath": "/tmp"}), id="classpath"),
        pytest.param(lambda s: s["deps"]["pyFiles"].append(s["mainApplicationFile"]), id="pyfile"),
    ],
)
def test_a_tampered_spark_application_gets_no_key(cleanroom, collaboration, tamper):
    cr, cid = cleanroom, collaboration
    did = f"q-{uuid.uuid4().hex[:8]}"
    propose(cid, did)
    await_document(did)
    before = [e for e in governance_events(cr, cid) if e["action"] == "secret_released"]
    obj, summary = submit_direct(cr, cid, did, f"tampered-{uuid.uuid4().hex[:6]}", tamper)
    assert obj["status"]["applicationState"]["state"] == "FAILED"
    assert summary["status"] == "refused" and summary["code"] == "VerifySnpAttestationFailed", summary
    after = [e for e in governance_events(cr, cid) if e["action"] == "secret_released"]
    assert after == before  # no key released


def test_a_query_waits_for_an_owner_without_auto_approval(cleanroom):
    cr = cleanroom
    cid, did = f"c-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    create(cr, cid)
    owners_setup(cr.cgs_url, cid, auto=("hospital_a",))  # hospital_b reviews queries itself
    auto = propose(cid, did)
    assert [v["member"] for v in auto["voted"]] == ["hospital_a"] and auto["waiting_for"] == ["hospital_b"]
    with pytest.raises(AirflowFailException, match=r"not accepted within .*hospital_b has not voted"):
        await_document(did, timeout_minutes=0.01)
    # hospital_b's automation identity cannot vote for it: governance refuses it without a policy
    resp = requests.post(
        f"{cr.cgs_url}/userdocuments/{did}/vote_accept",
        json={
            "proposalId": requests.get(f"{cr.cgs_url}/userdocuments/{did}", headers=member("analyst")).json()[
                "proposalId"
            ]
        },
        headers={"Authorization": "Bearer devstack-cgs-auto-hospital-b"},
        timeout=10,
    )
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "NoAutoApprovalPolicy"
    Owner(cr.cgs_url, "hospital_b").vote_document(did)
    assert await_document(did)["state"] == "Accepted"


def test_publishing_needs_the_owners_policy(cleanroom):
    cr = cleanroom
    cid = f"c-{uuid.uuid4().hex[:8]}"
    create(cr, cid)
    make_sources(cr.staging)
    with pytest.raises(AirflowFailException, match="hospital_a has not registered automation to publish"):
        run_task(gov_publish_op(cr, cid, [{"dataset": "visits_a", "source": "hospital_a/visits.csv"}]), {})
    # hospital_b registers publishing of its own dataset only: its automation cannot store visits_a's key
    Owner(cr.cgs_url, "hospital_b").register_autoapproval(cid, ["visits_b"])
    resp = requests.put(
        f"{cr.cgs_url}/contracts/{cid}/secrets/visits_a-dek",
        json={"value": "eA=="},
        headers={"Authorization": "Bearer devstack-cgs-auto-hospital-b"},
        timeout=10,
    )
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "NoPublishPolicy"
    # nor may another owner's source be named: each party reads only its own staging area
    with pytest.raises(AirflowFailException, match="outside hospital_b's staging area"):
        run_task(gov_publish_op(cr, cid, [{"dataset": "visits_b", "source": "hospital_a/visits.csv"}]), {})


def test_refused_when_consent_is_revoked(cleanroom, collaboration):
    cr, cid = cleanroom, collaboration
    did = f"q-{uuid.uuid4().hex[:8]}"
    propose(cid, did)
    await_document(did)
    gov = cr.cgs_url
    assert requests.post(f"{gov}/contracts/{cid}/disable", headers=member("hospital_b"), timeout=10).status_code == 200
    try:
        with pytest.raises(AirflowFailException, match=r"consent revoked: .*contract .* disabled by hospital_b"):
            run_task(check_op(cr, cid, did), {})
        obj, summary = submit_direct(cr, cid, did, f"revoked-{uuid.uuid4().hex[:6]}")
        assert obj["status"]["applicationState"]["state"] == "FAILED"
        assert summary["status"] == "refused" and summary["code"] == "ContractDisabled", summary
    finally:
        requests.post(f"{gov}/contracts/{cid}/enable", headers=member("hospital_b"), timeout=10)
    run_task(check_op(cr, cid, did), {})


def test_secrets_not_released_to_an_unattested_caller(cleanroom, collaboration):
    cr, cid = cleanroom, collaboration
    url = f"{cr.cgs_url}/contracts/{cid}/secrets/hospital_a_visits_a-dek"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    encrypt = {"publicKey": base64.b64encode(pem).decode()}
    resp = requests.post(url, json={"encrypt": encrypt, "documentId": "x"}, headers=member("hospital_a"), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "AttestationMissing"
    import hashlib

    contract = requests.get(f"{cr.cgs_url}/contracts/{cid}", headers=member("analyst"), timeout=10).json()
    claims = {
        "x-ms-sevsnpvm-hostdata": contract["data"]["policy"]["measurement"],
        "x-ms-sevsnpvm-is-debuggable": False,
        "x-ms-sevsnpvm-reportdata": hashlib.sha256(pem).hexdigest(),
        "iat": int(time.time()),
    }
    evidence = json.dumps(claims).encode()
    forged = {
        "evidence": base64.b64encode(evidence).decode(),
        "endorsements": base64.b64encode(Ed25519PrivateKey.generate().sign(evidence)).decode(),
        "uvmEndorsements": "",
    }
    resp = requests.post(url, json={"attestation": forged, "encrypt": encrypt, "documentId": "x"}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "VerifySnpAttestationFailed"


def test_the_runtime_refuses_answers_not_signed_by_the_pinned_governance(cleanroom):
    from include.cleanroom.spark_job import PinnedGovernance, Refused
    from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook

    real_key = CleanroomGovernanceHook().service_identity()
    status, body = PinnedGovernance(cleanroom.cgs_url, real_key).call("GET", "/service/identity")
    assert status == 200 and body["algorithm"] == "Ed25519"
    impostor = base64.b64encode(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()
    with pytest.raises(Refused) as err:
        PinnedGovernance(cleanroom.cgs_url, impostor).call("GET", "/service/identity")
    assert err.value.code == "GovernanceNotPinned"
    # whatever --cgs-url says: another server (here: the Kubernetes stand-in) is refused as well
    with pytest.raises(Refused) as err:
        PinnedGovernance(cleanroom.k8s_url, real_key).call("GET", "/version")
    assert err.value.code == "GovernanceNotPinned"


def test_differencing_queries_exhaust_the_privacy_budget(cleanroom):
    """Owners ask for DP (epsilon 1 per query, total 1.5): the first of a differencing pair runs,
    the second is refused before anything is computed, naming the budget."""
    cr = cleanroom
    cid = f"c-{uuid.uuid4().hex[:8]}"
    create(cr, cid)
    dp = {"epsilonPerQuery": 1.0, "totalBudget": 1.5, "bounds": {"visits": [0, 10]}}
    owners_setup(cr.cgs_url, cid, dp=dp)
    publish(cr, cid)
    q1, q2 = f"q-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    propose(cid, q1, "SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region")
    propose(cid, q2, "SELECT region, COUNT(*) AS n FROM visits_a WHERE age_band <> '20-29' GROUP BY region")
    await_document(q1)
    await_document(q2)
    first, _ = run(cr, cid, q1)
    assert first["summary"]["epsilon"] == {"visits_a": 1.0}
    with pytest.raises(AirflowFailException, match=r"\[BudgetExhausted\]"):
        run(cr, cid, q2, run_id="manual__2")
    rules = requests.get(
        f"{cr.cgs_url}/contracts/{cid}/datasets/visits_a/analysisrules", headers=member("analyst"), timeout=10
    ).json()
    assert rules["privacyBudget"] == {"totalEpsilon": 1.5, "spentEpsilon": 1.0}
