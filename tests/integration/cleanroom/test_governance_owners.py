"""What data owners decide in the governance stand-in (docs/cleanroom-standins.md, "Owners'
decisions"; real CGS has no such endpoints, so these run against the stand-in only): rules kept
by the owner alone, policy-bound automation identities, the privacy budget's atomic debit, and
answers signed by governance's service identity."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .support import DATASETS, MEMBER_TOKENS, analysis_rules

pytestmark = pytest.mark.integration
AUTO_B = {"Authorization": "Bearer devstack-cgs-auto-hospital-b"}


def session(name: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {MEMBER_TOKENS[name]}"
    return s


@pytest.fixture(scope="module")
def gov(cleanroom):
    return cleanroom.cgs_url


@pytest.fixture(scope="module")
def contract(gov):
    """An accepted contract over the demo datasets, with a placeholder measurement."""
    cid = f"ct-{uuid.uuid4().hex[:10]}"
    data = {
        "members": ["analyst", "hospital_a", "hospital_b"],
        "datasets": DATASETS,
        "policy": {"measurement": "0" * 64},
    }
    a = session("analyst")
    assert a.put(f"{gov}/contracts/{cid}", json={"data": data}).status_code == 200
    version = a.get(f"{gov}/contracts/{cid}").json()["version"]
    pid = a.post(f"{gov}/contracts/{cid}/propose", json={"version": version}).json()["proposalId"]
    for m in MEMBER_TOKENS:
        assert session(m).post(f"{gov}/contracts/{cid}/vote_accept", json={"proposalId": pid}).status_code == 200
    return cid


def test_only_the_owner_keeps_a_datasets_rules(gov, contract):
    path = f"{gov}/contracts/{contract}/datasets/visits_b/analysisrules"
    body = {"rules": analysis_rules("visits_b"), "privacyBudget": {"totalEpsilon": 2.0}}
    for stranger in ("analyst", "hospital_a"):
        resp = session(stranger).put(path, json=body)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "NotDatasetOwner"
    resp = requests.put(path, json=body, headers=AUTO_B, timeout=10)  # not even the owner's automation
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "AutomationNotAllowed"
    owner = session("hospital_b")
    assert owner.put(path, json=body).status_code == 200
    again = owner.put(path, json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "AnalysisRulesAlreadyExist"
    view = session("analyst").get(path).json()
    assert view["ownerId"] == "hospital_b" and view["rules"] == body["rules"]
    assert view["privacyBudget"] == {"totalEpsilon": 2.0, "spentEpsilon": 0.0}
    stricter = {**body, "rules": analysis_rules("visits_b", k=10), "version": view["version"]}
    assert owner.put(path, json=stricter).status_code == 200
    stale = owner.put(path, json=stricter)
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "PreconditionFailed"
    missing = session("analyst").get(f"{gov}/contracts/{contract}/datasets/nope/analysisrules")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "DatasetNotFound"


def test_automation_acts_only_under_its_owners_policy(gov, contract):
    a = session("analyst")
    did = f"doc-{uuid.uuid4().hex[:8]}"
    approvers = [{"approverId": "hospital_b", "approverIdType": "member"}]
    a.put(f"{gov}/userdocuments/{did}", json={"contractId": contract, "data": {"q": 1}, "approvers": approvers})
    pid = a.post(
        f"{gov}/userdocuments/{did}/propose", json={"version": a.get(f"{gov}/userdocuments/{did}").json()["version"]}
    ).json()["proposalId"]
    vote = requests.post(f"{gov}/userdocuments/{did}/vote_accept", json={"proposalId": pid}, headers=AUTO_B, timeout=10)
    assert vote.status_code == 403 and vote.json()["error"]["code"] == "NoAutoApprovalPolicy"
    # the owner itself registers the policy; nobody else can register it for the owner
    policy = {"queries": "analysis-rules", "publish": ["visits_b"]}
    resp = requests.put(f"{gov}/contracts/{contract}/autoapproval", json=policy, headers=AUTO_B, timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "AutomationNotAllowed"
    resp = session("hospital_a").put(f"{gov}/contracts/{contract}/autoapproval", json=policy)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "NotDatasetOwner"
    assert session("hospital_b").put(f"{gov}/contracts/{contract}/autoapproval", json=policy).status_code == 200
    assert {"memberId": "hospital_b", **policy} in a.get(f"{gov}/contracts/{contract}/autoapproval").json()["value"]
    vote = requests.post(f"{gov}/userdocuments/{did}/vote_accept", json={"proposalId": pid}, headers=AUTO_B, timeout=10)
    assert vote.status_code == 200
    final = a.get(f"{gov}/userdocuments/{did}").json()
    assert final["state"] == "Accepted" and final["finalVotes"] == [{"approverId": "hospital_b", "ballot": "accepted"}]
    # the automation may publish only the datasets the policy names, and do nothing else
    ok = requests.put(f"{gov}/contracts/{contract}/secrets/visits_b-dek", json={"value": "eHh4eA=="}, headers=AUTO_B)
    assert ok.status_code == 200 and ok.json()["secretId"] == "hospital_b_visits_b-dek"
    other = requests.put(f"{gov}/contracts/{contract}/secrets/other-dek", json={"value": "eHh4eA=="}, headers=AUTO_B)
    assert other.status_code == 403 and other.json()["error"]["code"] == "NoPublishPolicy"
    for path in (f"/contracts/{contract}/disable", f"/userdocuments/{did}/runtimeoptions/execution/disable"):
        resp = requests.post(gov + path, json={}, headers=AUTO_B, timeout=10)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "AutomationNotAllowed", path
    # withdrawn: the automation is powerless again
    assert session("hospital_b").delete(f"{gov}/contracts/{contract}/autoapproval").status_code == 204
    again = requests.put(f"{gov}/contracts/{contract}/secrets/visits_b-dek", json={"value": "eHh4eA=="}, headers=AUTO_B)
    assert again.status_code == 403


def test_answers_carry_the_service_identitys_signature(gov):
    key_pem = requests.get(f"{gov}/service/identity", timeout=10).json()["publicKey"]
    key = serialization.load_pem_public_key(key_pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    nonce = uuid.uuid4().hex
    resp = session("analyst").get(f"{gov}/show", headers={"X-Request-Nonce": nonce})
    key.verify(base64.b64decode(resp.headers["X-Governance-Signature"]), nonce.encode() + b"\n" + resp.content)
    err = session("analyst").get(f"{gov}/contracts/none", headers={"X-Request-Nonce": nonce})
    key.verify(base64.b64decode(err.headers["X-Governance-Signature"]), nonce.encode() + b"\n" + err.content)


def test_the_budget_debit_is_compare_and_set_and_all_or_nothing(cleanroom, gov, contract):
    """Debits need an attested clean room: a report endorsed by the platform's root for the
    contract's measurement (the stand-in node's key signs one here, as the node would)."""
    root_key = serialization.load_pem_private_key(
        (Path(cleanroom.vars["SDP_LOCAL"]) / "k8s_spark" / "attestation-root.key").read_bytes(), password=None
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = {
        "x-ms-sevsnpvm-hostdata": "0" * 64,
        "x-ms-sevsnpvm-is-debuggable": False,
        "x-ms-sevsnpvm-reportdata": hashlib.sha256(pem).hexdigest(),
        "iat": int(time.time()),
    }
    evidence = json.dumps(claims).encode()
    attestation = {
        "evidence": base64.b64encode(evidence).decode(),
        "endorsements": base64.b64encode(root_key.sign(evidence)).decode(),
        "uvmEndorsements": "",
    }
    owner = session("hospital_a")
    rules_path = f"{gov}/contracts/{contract}/datasets/visits_a/analysisrules"
    current = owner.get(rules_path)
    body = {"rules": analysis_rules("visits_a"), "privacyBudget": {"totalEpsilon": 1.5}}
    if current.status_code == 200:
        body["version"] = current.json()["version"]
    assert owner.put(rules_path, json=body).status_code == 200
    a = session("analyst")
    did = f"doc-{uuid.uuid4().hex[:8]}"
    approvers = [{"approverId": "hospital_a", "approverIdType": "member"}]
    a.put(f"{gov}/userdocuments/{did}", json={"contractId": contract, "data": {"q": 1}, "approvers": approvers})
    pid = a.post(
        f"{gov}/userdocuments/{did}/propose", json={"version": a.get(f"{gov}/userdocuments/{did}").json()["version"]}
    ).json()["proposalId"]
    owner.post(f"{gov}/userdocuments/{did}/vote_accept", json={"proposalId": pid})

    def debit(eps, expected, extra=()):
        debits = [{"datasetId": "visits_a", "epsilon": eps, "expectedSpentEpsilon": expected}, *extra]
        body = {
            "attestation": attestation,
            "encrypt": {"publicKey": base64.b64encode(pem).decode()},
            "documentId": did,
            "runId": "r",
            "debits": debits,
        }
        return requests.post(f"{gov}/contracts/{contract}/budget/debit", json=body, timeout=10)

    assert (
        requests.post(f"{gov}/contracts/{contract}/budget/debit", json={"debits": []}).json()["error"]["code"]
        == "AttestationMissing"
    )
    assert debit(1.0, 0.0).status_code == 200
    stale = debit(0.25, 0.0)  # another run debited meanwhile
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "BudgetConflict"
    over = debit(1.0, 1.0)
    assert over.status_code == 403 and over.json()["error"]["code"] == "BudgetExhausted"
    # all or nothing: a second dataset without a budget leaves the first untouched
    partial = debit(0.25, 1.0, [{"datasetId": "visits_b_none", "epsilon": 0.25, "expectedSpentEpsilon": 0.0}])
    assert partial.status_code == 404
    assert owner.get(rules_path).json()["privacyBudget"]["spentEpsilon"] == 1.0
    assert debit(0.5, 1.0).status_code == 200
    assert owner.get(rules_path).json()["privacyBudget"] == {"totalEpsilon": 1.5, "spentEpsilon": 1.5}
