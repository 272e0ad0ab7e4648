"""Clean room governance service (CGS): contracts, proposals and ballots, query documents, consent,
secrets, attestation refusals and the event log, as each member's CGS client serves them.

Against the real system when ``CLEANROOM_CGS_URLS`` is set: ``member=url`` pairs, comma-separated,
one per consortium member's cgs-client (``analyst=http://localhost:9290,hospital_a=...``); each
client authenticates itself to CCF with its member's certificate, so no token is sent. Otherwise
against the devstack stand-in, whose members are told apart by bearer token. Member ids are read
with ``GET /show`` (CCF member ids on the real system).
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.cleanroom.support import MEMBER_TOKENS

pytestmark = pytest.mark.contract
REAL = bool(os.environ.get("CLEANROOM_CGS_URLS"))


class Member:
    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.id = self.get("/show").json()["memberId"]

    def get(self, path, **kw):
        return self.session.get(self.url + path, timeout=60, **kw)

    def post(self, path, body=None, **kw):
        return self.session.post(self.url + path, json={} if body is None else body, timeout=60, **kw)

    def put(self, path, body, **kw):
        return self.session.put(self.url + path, json=body, timeout=60, **kw)


@pytest.fixture(scope="module")
def members(devstack) -> dict[str, Member]:
    if REAL:
        pairs = dict(p.split("=", 1) for p in os.environ["CLEANROOM_CGS_URLS"].split(",") if p)
        return {name: Member(url, None) for name, url in pairs.items()}
    v = devstack.start("cleanroom_governance")
    url = f"http://127.0.0.1:{v['SDP_CGS_PORT']}"
    return {name: Member(url, token) for name, token in MEMBER_TOKENS.items()}


def code(resp) -> str:
    return resp.json()["error"]["code"]


@pytest.fixture(scope="module")
def accepted(members):
    """A contract every member accepted."""
    cid = f"ct-{uuid.uuid4().hex[:10]}"
    first = next(iter(members.values()))
    data = {
        "title": "contract test",
        "members": sorted(m.id for m in members.values()),
        "policy": {"measurement": "0" * 64},
    }
    assert first.put(f"/contracts/{cid}", {"data": data}).status_code == 200
    version = first.get(f"/contracts/{cid}").json()["version"]
    proposal = first.post(f"/contracts/{cid}/propose", {"version": version})
    assert proposal.status_code == 200, proposal.text
    pid = proposal.json()["proposalId"]
    for m in members.values():
        assert m.post(f"/contracts/{cid}/vote_accept", {"proposalId": pid}).status_code == 200
    return cid


def test_contract_lifecycle(members):
    a, b = list(members.values())[:2]
    cid = f"ct-{uuid.uuid4().hex[:10]}"
    assert a.get(f"/contracts/{cid}").status_code == 404 and code(a.get(f"/contracts/{cid}")) == "ContractNotFound"
    data = {"title": "lifecycle", "members": sorted(m.id for m in members.values())}
    assert a.put(f"/contracts/{cid}", {"data": data}).status_code == 200
    again = a.put(f"/contracts/{cid}", {"data": data})
    assert again.status_code == 409 and code(again) == "ContractAlreadyExists"
    assert code(a.put(f"/contracts/{cid}", {})) in ("DataMissing", "ContractAlreadyExists")
    draft = a.get(f"/contracts/{cid}").json()
    assert draft["state"] == "Draft" and draft["proposalId"] == "" and draft["data"] == data
    stale = a.put(f"/contracts/{cid}", {"data": data, "version": "0.1"})
    assert stale.status_code == 412 and code(stale) == "PreconditionFailed"
    wrong = a.post(f"/contracts/{cid}/propose", {"version": "0.1"})
    assert wrong.status_code == 400 and code(wrong) == "ContractModified"
    assert code(a.post(f"/contracts/{cid}/propose", {})) == "VersionMissing"
    assert code(a.post(f"/contracts/{cid}/vote_accept", {"proposalId": "x"})) == "ContractNotProposed"
    pid = a.post(f"/contracts/{cid}/propose", {"version": draft["version"]}).json()["proposalId"]
    proposed = b.get(f"/contracts/{cid}").json()
    assert proposed["state"] == "Proposed" and proposed["proposalId"] == pid
    mismatch = b.post(f"/contracts/{cid}/vote_accept", {"proposalId": "0" * 64})
    assert mismatch.status_code == 400 and code(mismatch) == "ProposalIdMismatch"
    assert code(b.post(f"/contracts/{cid}/vote_accept", {})) == "ProposalIdMissing"
    voters = list(members.values())
    for m in voters[:-1]:
        assert m.post(f"/contracts/{cid}/vote_accept", {"proposalId": pid}).status_code == 200
        assert a.get(f"/contracts/{cid}").json()["state"] == "Proposed"  # not every member yet
    assert voters[-1].post(f"/contracts/{cid}/vote_accept", {"proposalId": pid}).status_code == 200
    done = a.get(f"/contracts/{cid}").json()
    assert done["state"] == "Accepted"
    assert sorted(v["memberId"] for v in done["finalVotes"]) == sorted(m.id for m in voters)
    closed = a.put(f"/contracts/{cid}", {"data": data, "version": done["version"]})
    assert closed.status_code == 405 and code(closed) == "ContractAlreadyAccepted"
    assert {"id": cid} in a.get("/contracts", params={"state": "Accepted"}).json()["value"]
    assert code(a.get("/contracts", params={"state": "Odd"})) == "InvalidParameter"


def test_a_rejection_keeps_the_contract_out_of_force(members):
    a, b = list(members.values())[:2]
    cid = f"ct-{uuid.uuid4().hex[:10]}"
    a.put(f"/contracts/{cid}", {"data": {"members": sorted(m.id for m in members.values())}})
    pid = a.post(f"/contracts/{cid}/propose", {"version": a.get(f"/contracts/{cid}").json()["version"]}).json()[
        "proposalId"
    ]
    assert b.post(f"/contracts/{cid}/vote_reject", {"proposalId": pid}).status_code == 200
    assert a.get(f"/contracts/{cid}").json()["state"] != "Accepted"


def test_consent_any_member_can_disable_execution(members, accepted):
    a, b = list(members.values())[:2]
    assert a.post(f"/contracts/{accepted}/checkstatus/execution").json() == {"status": "enabled"}
    assert b.post(f"/contracts/{accepted}/disable").status_code == 200
    status = a.post(f"/contracts/{accepted}/checkstatus/execution").json()
    assert status["status"] == "disabled" and status["reason"]["code"] == "ContractDisabled"
    assert b.id in status["reason"]["message"]
    assert b.post(f"/contracts/{accepted}/enable").status_code == 200
    assert a.post(f"/contracts/{accepted}/checkstatus/execution").json() == {"status": "enabled"}
    cid = f"ct-{uuid.uuid4().hex[:10]}"
    a.put(f"/contracts/{cid}", {"data": {"x": 1}})
    assert code(a.post(f"/contracts/{cid}/disable")) == "ContractNotAccepted"


def test_user_documents_need_every_approver(members, accepted):
    a, b = list(members.values())[:2]
    did = f"doc-{uuid.uuid4().hex[:10]}"
    assert code(a.put(f"/userdocuments/{did}", {"data": {"q": 1}})) == "ContractIdMissing"
    missing = a.put(f"/userdocuments/{did}", {"contractId": "ct-none", "data": {"q": 1}})
    assert missing.status_code == 404 and code(missing) == "ContractNotFound"
    approvers = [{"approverId": a.id, "approverIdType": "member"}, {"approverId": b.id, "approverIdType": "member"}]
    assert (
        a.put(
            f"/userdocuments/{did}", {"contractId": accepted, "data": {"query": "SELECT 1"}, "approvers": approvers}
        ).status_code
        == 200
    )
    doc = a.get(f"/userdocuments/{did}").json()
    assert doc["state"] == "Draft" and doc["contractId"] == accepted
    pid = a.post(f"/userdocuments/{did}/propose", {"version": doc["version"]}).json()["proposalId"]
    assert a.post(f"/userdocuments/{did}/vote_accept", {"proposalId": pid}).status_code == 200
    assert a.get(f"/userdocuments/{did}").json()["state"] == "Proposed"
    assert b.post(f"/userdocuments/{did}/vote_accept", {"proposalId": pid}).status_code == 200
    final = a.get(f"/userdocuments/{did}").json()
    assert final["state"] == "Accepted" and final["proposerId"] == a.id
    assert a.post(f"/userdocuments/{did}/checkstatus/execution").json()["status"] == "enabled"
    assert b.post(f"/userdocuments/{did}/runtimeoptions/execution/disable").status_code == 200
    assert a.post(f"/userdocuments/{did}/checkstatus/execution").json()["status"] == "disabled"
    assert b.post(f"/userdocuments/{did}/runtimeoptions/execution/enable").status_code == 200
    changed = a.put(f"/userdocuments/{did}", {"contractId": accepted, "data": {"q": 2}, "version": final["version"]})
    assert changed.status_code == 405 and code(changed) == "UserDocumentAlreadyAccepted"


def public_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(pem).decode()


def test_secrets_are_stored_per_member_and_never_released_without_attestation(members, accepted):
    a = next(iter(members.values()))
    stored = a.put(f"/contracts/{accepted}/secrets/dek", {"value": base64.b64encode(os.urandom(32)).decode()})
    assert stored.status_code == 200 and stored.json()["secretId"] == f"{a.id}_dek"
    assert {"secretId": f"{a.id}_dek"} in a.get(f"/contracts/{accepted}/secrets").json()["value"]
    assert code(a.put(f"/contracts/{accepted}/secrets/empty", {"value": ""})) == "ValueMissing"
    too_big = a.put(f"/contracts/{accepted}/secrets/big", {"value": "x" * 25601})
    assert too_big.status_code == 400 and code(too_big) == "ValueTooLarge"
    url = f"/contracts/{accepted}/secrets/{a.id}_dek"
    none = a.post(url, {"encrypt": {"publicKey": public_key()}})
    assert none.status_code == 400 and code(none) == "AttestationMissing"
    no_key = a.post(url, {"attestation": {"evidence": "e30=", "endorsements": "", "uvmEndorsements": ""}})
    assert no_key.status_code == 400 and code(no_key) == "EncryptionMissing"
    forged = {
        "evidence": base64.b64encode(json.dumps({"x-ms-sevsnpvm-hostdata": "0" * 64}).encode()).decode(),
        "endorsements": base64.b64encode(b"\0" * 64).decode(),
        "uvmEndorsements": "",
    }
    bad = a.post(url, {"attestation": forged, "encrypt": {"publicKey": public_key()}})
    assert bad.status_code == 400 and code(bad) == "VerifySnpAttestationFailed"
    assert "value" not in bad.json()


def test_clean_room_calls_need_attestation(members, accepted):
    a = next(iter(members.values()))
    for path in (f"/contracts/{accepted}/consentcheck/execution", f"/contracts/{accepted}/acceptedUserDocuments/x"):
        resp = a.post(path, {})
        assert resp.status_code == 400 and code(resp) == "AttestationMissing", path
    put = a.session.put(
        f"{a.url}/contracts/{accepted}/events", params={"id": "e1", "scope": "s"}, json={"data": "e30="}, timeout=60
    )
    assert put.status_code == 400 and code(put) == "AttestationMissing"


def test_events_answer_a_list(members, accepted):
    a = next(iter(members.values()))
    latest = a.get(f"/contracts/{accepted}/events", params={"id": "nothing-yet", "scope": "none"})
    assert latest.status_code == 200 and latest.json()["value"] == []


def test_unknown_callers_are_refused(members):
    if REAL:  # a cgs-client acts for its own member: no caller identity to get wrong
        a = next(iter(members.values()))
        assert a.get("/show").status_code == 200
        return
    url = next(iter(members.values())).url
    resp = requests.get(f"{url}/contracts", headers={"Authorization": "Bearer nobody"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "InvalidAuthenticationInfo"


def proposed_contract(members, data) -> tuple[str, str]:
    a = next(iter(members.values()))
    cid = f"ct-{uuid.uuid4().hex[:10]}"
    assert a.put(f"/contracts/{cid}", {"data": data}).status_code == 200
    proposal = a.post(f"/contracts/{cid}/propose", {"version": a.get(f"/contracts/{cid}").json()["version"]})
    return cid, proposal.json()["proposalId"]


def test_the_proposal_state_is_served_as_proposalState(members):
    """CCF's governance API (and the cgs-client that relays it) names it ``proposalState``."""
    a = next(iter(members.values()))
    cid, pid = proposed_contract(members, {"title": "state"})
    proposal = a.get(f"/proposals/{pid}").json()
    assert proposal["proposalState"] == "Open" and "state" not in proposal
    for m in members.values():
        m.post(f"/contracts/{cid}/vote_accept", {"proposalId": pid})
    assert a.get(f"/proposals/{pid}").json()["proposalState"] == "Accepted"


def test_a_contract_needs_every_active_member_whoever_it_lists(members):
    """The clean room constitution accepts set_contract only when all active members voted accept."""
    ms = list(members.values())
    a = ms[0]
    cid, pid = proposed_contract(members, {"title": "two listed", "members": sorted(m.id for m in ms[:2])})
    for m in ms[:2]:
        assert m.post(f"/contracts/{cid}/vote_accept", {"proposalId": pid}).status_code == 200
    assert a.get(f"/contracts/{cid}").json()["state"] == "Proposed"  # the third member has not voted
    assert ms[2].post(f"/contracts/{cid}/vote_accept", {"proposalId": pid}).status_code == 200
    assert a.get(f"/contracts/{cid}").json()["state"] == "Accepted"


def test_a_repeated_identical_ballot_is_accepted(members):
    a, b = list(members.values())[:2]
    cid, pid = proposed_contract(members, {"title": "twice"})
    assert b.post(f"/contracts/{cid}/vote_accept", {"proposalId": pid}).status_code == 200
    again = b.post(f"/contracts/{cid}/vote_accept", {"proposalId": pid})
    assert again.status_code == 200, again.text
    votes = a.get(f"/proposals/{pid}").json()["votes"]
    assert [v for v in votes if v["memberId"] == b.id] == [{"memberId": b.id, "vote": True}]
