"""The clean room's operators against the stand-ins and a real pyspark: create -> prepare -> run, and
every refusal: a member who has not voted, a data owner who has not approved, revoked consent, an
attestation whose measurement is not the approved one, a caller without attestation."""

from __future__ import annotations

import base64
import csv
import json
import time
import uuid
from pathlib import Path

import pytest
import requests
from airflow.sdk.exceptions import AirflowFailException
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from include.cleanroom.contract import application_file, application_measurement
from include.cleanroom.manifest import build_spark_application

from .support import DATASETS, MEMBER_TOKENS, QUERY, make_sources, run_task, wait_application

pytestmark = pytest.mark.integration

ALL_VOTERS = ["cleanroom_governance", "cleanroom_member_hospital_a", "cleanroom_member_hospital_b"]
OWNERS = ["cleanroom_member_hospital_a", "cleanroom_member_hospital_b"]


def ops():
    from sensitive_data.operators import cleanroom

    return cleanroom


def create(cr, contract_id, voters=ALL_VOTERS, timeout_minutes=10):
    o = ops()
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
    run_task(
        o.CleanroomVoteOperator(task_id="vote", kind="contract", target_id=contract_id, voter_conn_ids=voters), store
    )
    await_op = o.CleanroomAwaitAcceptanceOperator(
        task_id="await_acceptance",
        kind="contract",
        target_id=contract_id,
        acceptance_timeout_minutes=timeout_minutes,
        poll_interval=0.2,
    )
    return run_task(await_op, store)


def prepare(cr, contract_id, document_id, voters=OWNERS, query=QUERY, publish=True):
    o = ops()
    store: dict = {}
    sources = make_sources(cr.staging)
    if publish:
        parties = [
            {"dataset": "visits_a", "source": "hospital_a/visits.csv", "member_conn_id": "cleanroom_member_hospital_a"},
            {
                "dataset": "visits_b",
                "source": str(sources["visits_b"]),
                "member_conn_id": "cleanroom_member_hospital_b",
            },
        ]
        run_task(
            o.CleanroomPublishDatasetsOperator(
                task_id="publish_datasets",
                contract_id=contract_id,
                parties=parties,
                storage_dir=str(cr.storage),
                staging_dir=str(cr.staging),
            ),
            store,
        )
    run_task(
        o.CleanroomProposeQueryOperator(
            task_id="propose_query", contract_id=contract_id, document_id=document_id, query=query
        ),
        store,
    )
    run_task(
        o.CleanroomVoteOperator(task_id="vote_query", kind="document", target_id=document_id, voter_conn_ids=voters),
        store,
    )
    return store


def check_op(cr, contract_id, document_id):
    return ops().CleanroomCheckRunnableOperator(
        task_id="check_runnable", contract_id=contract_id, document_id=document_id, storage_dir=str(cr.storage)
    )


def member(cr, name):
    return {"Authorization": f"Bearer {MEMBER_TOKENS[name]}"}


def test_create_prepare_run_with_group_suppression(cleanroom):
    cr = cleanroom
    cid, did = f"c-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    assert create(cr, cid)["state"] == "Accepted"
    store = prepare(cr, cid, did)
    published = store[("publish_datasets", "return_value")]["datasets"]
    assert {d["secret_id"] for d in published.values()} == {"hospital_a_visits_a-dek", "hospital_b_visits_b-dek"}
    approval = run_task(
        ops().CleanroomAwaitAcceptanceOperator(
            task_id="await_query_approval", kind="document", target_id=did, poll_interval=0.2
        ),
        store,
    )
    assert approval["state"] == "Accepted"

    # prepare again: an unchanged source is not sealed again (same key, same file)
    again = prepare(cr, cid, did)[("publish_datasets", "return_value")]["datasets"]
    assert all(d["reused"] for d in again.values())
    assert {k: d["sealed_sha256"] for k, d in again.items()} == {k: d["sealed_sha256"] for k, d in published.items()}

    # the sealed files hold no plaintext
    sealed = (cr.storage / "hospital_a" / cid / "visits_a.sealed").read_bytes()
    assert b"north-000" not in sealed and sealed.startswith(b"SDPCRDS1")

    o = ops()
    run_store: dict = {}
    run_id = "manual__2026-01-01T00:00:00+00:00"
    check = run_task(check_op(cr, cid, did), run_store, run_id)
    assert check["approvers"] == ["hospital_a", "hospital_b"]
    started = time.monotonic()
    run = run_task(
        o.CleanroomSparkRunOperator(
            task_id="run_query", contract_id=cid, document_id=did, output_dir=str(cr.output), poll_interval=0.5
        ),
        run_store,
        run_id,
    )
    assert run["state"] == "COMPLETED", run
    print(f"spark run: {time.monotonic() - started:.1f}s")
    result = run_task(o.CleanroomCollectResultOperator(task_id="collect_result"), run_store, run_id)
    assert result["rows"] == 2 and result["suppressed_groups"] == 1 and result["min_group_size"] == 5
    with open(result["result_path"], newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["region"])
    assert rows == [{"region": "north", "n": "20", "visits": "100"}, {"region": "south", "n": "12", "visits": "60"}]

    audit = run_task(
        o.CleanroomAuditTrailOperator(task_id="audit_trail", contract_id=cid, document_id=did), run_store, run_id
    )
    assert audit["runtime_events"] == ["started", "completed"]
    assert {"contract_accepted", "document_accepted", "secret_released", "document_released"} <= set(
        audit["governance_actions"]
    )
    assert (cr.output / cid / did / run["application"] / "audit.jsonl").exists()

    # a retried run task finds the finished application instead of starting another one
    again = run_task(
        o.CleanroomSparkRunOperator(task_id="run_query", contract_id=cid, document_id=did, output_dir=str(cr.output)),
        run_store,
        run_id,
    )
    assert again["application"] == run["application"] and again["state"] == "COMPLETED"

    # the dataset keys appear nowhere but in governance: not in XComs, not in the driver log
    keys = requests.post(f"{cr.cgs_url}/contracts/{cid}/secrets/hospital_a_visits_a-dek", json={}, timeout=10)
    assert keys.status_code == 400
    state = json.loads((Path(cr.vars["SDP_LOCAL"]) / "cleanroom_governance" / "state.json").read_text())
    secret_values = [s["value"] for s in state["secrets"][cid].values()]
    assert len(secret_values) == 2
    from sensitive_data.hooks.cleanroom_k8s import CleanroomSparkHook

    driver_log = CleanroomSparkHook().driver_log(run["driver_pod"], "cleanroom")
    text = json.dumps({str(k): v for k, v in {**store, **run_store}.items()}) + driver_log
    assert "key of dataset visits_a released" in driver_log
    for value in secret_values:
        assert value not in text and base64.b64decode(value).hex() not in text


def test_refused_when_a_member_has_not_voted(cleanroom):
    cid = f"c-{uuid.uuid4().hex[:8]}"
    with pytest.raises(AirflowFailException, match=r"contract .* was not accepted within .*hospital_b has not voted"):
        create(cleanroom, cid, voters=["cleanroom_governance", "cleanroom_member_hospital_a"], timeout_minutes=0.01)
    with pytest.raises(AirflowFailException, match=r"is not accepted \(state Proposed\): hospital_b has not voted"):
        run_task(check_op(cleanroom, cid, "any-doc"), {})
    with pytest.raises(AirflowFailException, match="not accepted"):
        prepare(cleanroom, cid, "q1")


def test_refused_when_a_data_owner_has_not_approved_the_query(cleanroom):
    cid = f"c-{uuid.uuid4().hex[:8]}"
    create(cleanroom, cid)
    prepare(cleanroom, cid, "q-partial", voters=["cleanroom_member_hospital_a"])
    with pytest.raises(
        AirflowFailException, match=r"query document q-partial is not approved .*hospital_b has not voted"
    ):
        run_task(check_op(cleanroom, cid, "q-partial"), {})
    # the analyst is no approver of a query over the hospitals' data: no ballot is cast for it
    skipped = run_task(
        ops().CleanroomVoteOperator(
            task_id="v", kind="document", target_id="q-partial", voter_conn_ids=["cleanroom_governance"]
        ),
        {},
    )
    assert skipped["voted"] == [] and skipped["skipped"][0]["why"] == "not a required voter"
    # a rejected ballot ends the proposal
    run_task(
        ops().CleanroomVoteOperator(
            task_id="v",
            kind="document",
            target_id="q-partial",
            voter_conn_ids=["cleanroom_member_hospital_b"],
            accept=False,
        ),
        {},
    )
    with pytest.raises(AirflowFailException, match="is not approved"):
        run_task(check_op(cleanroom, cid, "q-partial"), {})


def test_query_rules_at_proposal(cleanroom):
    cid = f"c-{uuid.uuid4().hex[:8]}"
    create(cleanroom, cid)
    for query, message in [
        ("DROP TABLE visits_a", "only SELECT queries"),
        ("SELECT region, COUNT(*) AS n FROM visits_a GROUP BY region; DELETE FROM visits_b", "2 statements"),
        ("SELECT region, COUNT(*) AS n FROM patients GROUP BY region", "not a dataset of the contract"),
        ("SELECT * FROM parquet.`/etc/passwd`", "qualified or path-based"),
        ("SELECT region, SUM(visits) AS total FROM visits_a GROUP BY region", "group's size"),
    ]:
        with pytest.raises(AirflowFailException, match=message):
            run_task(
                ops().CleanroomProposeQueryOperator(task_id="p", contract_id=cid, document_id="bad", query=query), {}
            )
    resp = requests.get(f"{cleanroom.cgs_url}/userdocuments/bad", headers=member(cleanroom, "analyst"), timeout=10)
    assert resp.status_code == 404  # nothing reached governance


def submit_direct(cr, cid, did, main_file, name):
    """A SparkApplication submitted past the DAG's checks: the clean room must refuse by itself."""
    from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook
    from sensitive_data.hooks.cleanroom_k8s import CleanroomSparkHook

    k8s = CleanroomSparkHook()
    datasets = {
        d: (cr.storage / o / cid / f"{d}.sealed").as_uri()
        for d, o in (("visits_a", "hospital_a"), ("visits_b", "hospital_b"))
    }
    manifest = build_spark_application(
        name=name,
        namespace="cleanroom",
        main_application_file=f"local://{main_file}",
        cgs_url=CleanroomGovernanceHook().runtime_url,
        contract_id=cid,
        document_id=did,
        run_id=name,
        datasets=datasets,
        output=str(cr.output / name),
    )
    k8s.submit(manifest)
    obj = wait_application(k8s, name)
    return obj, k8s.driver_log(f"{name}-driver", "cleanroom")


@pytest.fixture(scope="module")
def runnable(cleanroom):
    """An accepted contract with published datasets and an approved query (no Spark run)."""
    cid, did = f"c-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    create(cleanroom, cid)
    prepare(cleanroom, cid, did)
    run_task(check_op(cleanroom, cid, did), {})
    return cid, did


def test_refused_when_consent_is_revoked(cleanroom, runnable):
    cid, did = runnable
    gov = cleanroom.cgs_url
    assert (
        requests.post(f"{gov}/contracts/{cid}/disable", headers=member(cleanroom, "hospital_b"), timeout=10).status_code
        == 200
    )
    try:
        with pytest.raises(AirflowFailException, match=r"consent revoked: .*contract .* disabled by hospital_b"):
            run_task(check_op(cleanroom, cid, did), {})
        # past the DAG's check, the clean room itself is refused the consent check and the keys
        obj, log = submit_direct(cleanroom, cid, did, application_file().resolve(), f"revoked-{uuid.uuid4().hex[:6]}")
        assert obj["status"]["applicationState"]["state"] == "FAILED"
        assert "CLEANROOM REFUSED" in log and "hospital_b" in log and "disabled" in log
        assert not (cleanroom.output / obj["metadata"]["name"]).exists()
    finally:
        requests.post(f"{gov}/contracts/{cid}/enable", headers=member(cleanroom, "hospital_b"), timeout=10)
    # consent for one query document can be revoked on its own
    assert (
        requests.post(
            f"{gov}/userdocuments/{did}/runtimeoptions/execution/disable",
            headers=member(cleanroom, "hospital_a"),
            timeout=10,
        ).status_code
        == 200
    )
    try:
        with pytest.raises(AirflowFailException, match=r"query document .* disabled by hospital_a"):
            run_task(check_op(cleanroom, cid, did), {})
    finally:
        requests.post(
            f"{gov}/userdocuments/{did}/runtimeoptions/execution/enable",
            headers=member(cleanroom, "hospital_a"),
            timeout=10,
        )
    run_task(check_op(cleanroom, cid, did), {})


def test_refused_when_the_measurement_is_not_the_approved_one(cleanroom, runnable, tmp_path):
    cid, did = runnable
    tampered = tmp_path / "spark_job.py"
    tampered.write_text(application_file().read_text() + "\n# print the keys, just this once\n")
    assert application_measurement(tampered) != application_measurement()
    obj, log = submit_direct(cleanroom, cid, did, tampered, f"tampered-{uuid.uuid4().hex[:6]}")
    assert obj["status"]["applicationState"]["state"] == "FAILED"
    assert "CLEANROOM REFUSED" in log and "VerifySnpAttestationFailed" in log and "x-ms-sevsnpvm-hostdata" in log
    events = requests.get(
        f"{cleanroom.cgs_url}/contracts/{cid}/events",
        params={"scope": "governance", "id": cid, "from_seqno": 1},
        headers=member(cleanroom, "analyst"),
        timeout=10,
    ).json()["value"]
    assert not [e for e in events if e["data"]["action"] == "secret_released"]


def test_secrets_not_released_to_an_unattested_caller(cleanroom, runnable):
    cid, did = runnable
    url = f"{cleanroom.cgs_url}/contracts/{cid}/secrets/hospital_a_visits_a-dek"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    encrypt = {"publicKey": base64.b64encode(pem).decode()}
    # no attestation at all, even with a member's credentials
    resp = requests.post(
        url, json={"encrypt": encrypt, "documentId": did}, headers=member(cleanroom, "hospital_a"), timeout=10
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "AttestationMissing"
    # a report with the right measurement, signed by someone else than the platform
    import hashlib

    claims = {
        "x-ms-sevsnpvm-hostdata": application_measurement(),
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
    resp = requests.post(url, json={"attestation": forged, "encrypt": encrypt, "documentId": did}, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "VerifySnpAttestationFailed"
    assert "attestation root" in resp.json()["error"]["message"]
    # the audit log records both refusals
    events = requests.get(
        f"{cleanroom.cgs_url}/contracts/{cid}/events",
        params={"scope": "governance", "id": cid, "from_seqno": 1},
        headers=member(cleanroom, "analyst"),
        timeout=10,
    ).json()["value"]
    refused = [e["data"] for e in events if e["data"]["action"] == "secret_refused"]
    assert {r["code"] for r in refused} >= {"AttestationMissing", "VerifySnpAttestationFailed"}


def test_only_the_owner_publishes_a_dataset(cleanroom, runnable):
    cid, _ = runnable
    parties = [
        {"dataset": "visits_a", "source": "hospital_a/visits.csv", "member_conn_id": "cleanroom_member_hospital_b"}
    ]
    with pytest.raises(AirflowFailException, match="is member hospital_b, but dataset visits_a is owned by hospital_a"):
        run_task(
            ops().CleanroomPublishDatasetsOperator(
                task_id="publish",
                contract_id=cid,
                parties=parties,
                storage_dir=str(cleanroom.storage),
                staging_dir=str(cleanroom.staging),
            ),
            {},
        )
