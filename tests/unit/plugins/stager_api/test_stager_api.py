"""The stager API's own rules, with Airflow's parts (runs, keys, WebDAV, auth) replaced by fakes."""

from __future__ import annotations

from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Request
from fastapi.testclient import TestClient

from include.stager import seal as job_seal
from include.stager.credentials import (
    decrypt_bound,
    decrypt_client,
    encrypt_bound,
    encrypt_password,
    looks_encrypted,
)
from include.stager.errors import UserError
from sensitive_data.stager_api.app import Caller, Services, create_app
from sensitive_data.stager_api.runs import JobRecord, stager_state

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SEAL_KEY = b"k" * 32


class FakeStore:
    def __init__(self):
        self.runs: dict[str, JobRecord] = {}
        self.cancelled, self.rerun_ids = [], []

    def create(self, conf, owner, job_id):
        self.runs[job_id] = JobRecord(id=job_id, owner=owner, state="scheduled", attempts=0, conf=conf,
                                      created=datetime(2026, 1, 1))
        return job_id

    def list(self, owner):
        return [r for r in self.runs.values() if owner is None or r.owner == owner]

    def get(self, job_id):
        return self.runs.get(job_id)

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        self.runs[job_id].state = "archived"

    def rerun(self, job_id):
        self.rerun_ids.append(job_id)
        self.runs[job_id].state = "scheduled"


CHECKED: list[str] = []


def check(user, password):
    CHECKED.append(user)
    if password != "good":
        raise UserError(f"the data repository rejected the credential of {user!r} (HTTP 401)")


@pytest.fixture
def api():
    store = FakeStore()
    identities = {"carol": {"stagerUser": ["carol-posix"], "drUser": ["carol@ru.nl", "lab-svc"]}}
    services = Services(store=store, looks_encrypted=lambda v: looks_encrypted(v, KEY),
                        decrypt_client=lambda v: decrypt_client(v, KEY),
                        encrypt_bound=lambda p, **kw: encrypt_bound(p, KEY, **kw),
                        seal=lambda job, job_id, who: job_seal.seal(job, job_id, who, SEAL_KEY),
                        check_credential=check,
                        dac_collections=lambda: {"3010000.01": "/z/dccn/DAC_3010000.01"},
                        identities=lambda: identities)
    users = {"alice": Caller("alice", False), "bob": Caller("bob", False), "carol": Caller("carol", False),
             "admin": Caller("admin", True)}

    def caller(request: Request):
        name = request.headers.get("x-user")
        if name not in users:
            from fastapi import HTTPException

            raise HTTPException(401, "Not authenticated")
        return users[name]

    client = TestClient(create_app(services=lambda: services, caller=caller))
    client.store = store
    return client


def job(user="alice", password="good", **kw):
    return {"title": "t", "stagerUser": user, "drUser": user, "drPass": password, "srcURL": "/p/x",
            "dstURL": "irods:/z/home/x", **kw}


def as_(name):
    return {"x-user": name}


def test_submit_checks_the_credential_stores_a_bound_ciphertext_and_seals_the_job(api):
    r = api.post("/v1/job", json=job(), headers=as_("alice"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "scheduled" and "drPass" not in body["data"] and "good" not in r.text
    assert "seal" not in body["data"] and body["data"]["submittedBy"] == "alice"
    job_id = body["id"]
    rec = api.store.runs[job_id]
    stored = rec.conf["drPass"]
    assert decrypt_bound(stored, KEY, dr_user="alice", stager_user="alice", job_id=job_id) == "good"
    with pytest.raises(UserError, match="not encrypted for this job"):  # bound: any other job refuses it
        decrypt_bound(stored, KEY, dr_user="alice", stager_user="alice", job_id=job_id + "x")
    with pytest.raises(UserError):
        decrypt_client(stored, KEY)  # nor is it a client ciphertext any more (OAEP with a label)
    job_seal.verify(rec.conf, job_id, rec.conf["seal"], "alice", SEAL_KEY, triggering_user=rec.owner)


@pytest.mark.parametrize("oaep", [False, True])
def test_a_client_ciphertext_is_checked_and_re_encrypted_for_the_job(api, oaep):
    r = api.post("/v1/job", json=job(password=encrypt_password("good", KEY, oaep=oaep)), headers=as_("alice"))
    assert r.status_code == 200, r.text
    rec = api.store.runs[r.json()["id"]]
    assert decrypt_bound(rec.conf["drPass"], KEY, dr_user="alice", stager_user="alice", job_id=rec.id) == "good"


def test_a_pkcs1v15_ciphertext_of_a_wrong_password_or_garbage_ends_at_the_credential_check(api):
    """OpenSSL >= 3.2 may answer a bad v1.5 ciphertext with random bytes: the PROPFIND refuses them."""
    import base64
    import os

    for value in (encrypt_password("bad", KEY), base64.b64encode(os.urandom(256)).decode()):
        r = api.post("/v1/job", json=job(password=value), headers=as_("alice"))
        assert r.status_code == 400, r.text
    assert not api.store.runs


def test_a_bound_ciphertext_of_another_job_is_refused(api):
    first = api.post("/v1/job", json=job(), headers=as_("alice")).json()["id"]
    copied = api.store.runs[first].conf["drPass"]
    r = api.post("/v1/job", json=job(password=copied), headers=as_("alice"))
    assert r.status_code == 400 and len(api.store.runs) == 1


def test_seal_fields_are_never_taken_from_the_submitter(api):
    for field in ("seal", "submittedBy"):
        r = api.post("/v1/job", json=job(**{field: "x"}), headers=as_("alice"))
        assert r.status_code == 400 and "set by the stager API" in r.text
    assert not api.store.runs


def test_a_wrong_credential_is_rejected_with_a_clear_message(api):
    r = api.post("/v1/job", json=job(password="bad"), headers=as_("alice"))
    assert r.status_code == 400 and "HTTP 401" in r.json()["detail"]
    assert not api.store.runs


def test_unauthenticated_requests_are_refused_but_ping_is_open(api):
    assert api.post("/v1/job", json=job()).status_code == 401
    assert api.get("/v1/ping").json() == "pong"


def test_users_submit_only_as_themselves(api):
    r = api.post("/v1/job", json=job(user="bob"), headers=as_("alice"))
    assert r.status_code == 400 and "only submit jobs as stagerUser 'alice'" in r.text
    assert api.post("/v1/job", json=job(user="bob"), headers=as_("admin")).status_code == 200


def test_another_researchers_druser_and_ciphertext_are_refused(api):
    """Researcher B with A's drUser and A's (client) ciphertext: refused before any credential check."""
    CHECKED.clear()
    stolen = encrypt_password("good", KEY)
    r = api.post("/v1/job", json={**job(user="bob"), "drUser": "alice", "drPass": stolen}, headers=as_("bob"))
    assert r.status_code == 400 and "may not use the repository account 'alice'" in r.text
    assert not api.store.runs and CHECKED == []  # nothing was sent to the repository either


def test_identities_setting_maps_an_airflow_user(api):
    ok = {**job(user="carol-posix"), "drUser": "lab-svc"}
    assert api.post("/v1/job", json=ok, headers=as_("carol")).status_code == 200
    # a mapped user loses the same-name default
    r = api.post("/v1/job", json=job(user="carol"), headers=as_("carol"))
    assert r.status_code == 400 and "'carol-posix'" in r.text
    r = api.post("/v1/job", json={**job(user="carol-posix"), "drUser": "alice"}, headers=as_("carol"))
    assert r.status_code == 400 and "repository account 'alice'" in r.text


def test_batch_submission_is_207_when_only_some_are_accepted(api):
    r = api.post("/v1/jobs", json={"jobs": [job(), job(password="bad"), job(srcURL="rel")]},
                 headers=as_("alice"))
    assert r.status_code == 207
    statuses = [j["status"] for j in r.json()["jobs"]]
    assert statuses == [200, 400, 400]
    assert api.post("/v1/jobs", json=[job(), job()], headers=as_("alice")).status_code == 200
    assert api.post("/v1/jobs", json=[job(password="bad")], headers=as_("alice")).status_code == 400


def test_another_users_job_is_invisible(api):
    job_id = api.post("/v1/job", json=job(), headers=as_("alice")).json()["id"]
    assert api.get(f"/v1/job/{job_id}", headers=as_("bob")).status_code == 404
    assert api.delete(f"/v1/job/{job_id}", headers=as_("bob")).status_code == 404
    assert api.put(f"/v1/job/scheduled/{job_id}", headers=as_("bob")).status_code == 404
    assert api.get("/v1/jobs", headers=as_("bob")).json()["jobs"] == []
    assert [j["id"] for j in api.get("/v1/jobs", headers=as_("alice")).json()["jobs"]] == [job_id]
    assert [j["id"] for j in api.get("/v1/jobs", headers=as_("admin")).json()["jobs"]] == [job_id]
    assert api.get(f"/v1/job/{job_id}", headers=as_("admin")).status_code == 200


def test_states_cancel_and_rerun(api):
    job_id = api.post("/v1/job", json=job(), headers=as_("alice")).json()["id"]
    assert [j["id"] for j in api.get("/v1/jobs/scheduled", headers=as_("alice")).json()["jobs"]] == [job_id]
    assert api.get("/v1/jobs/bogus", headers=as_("alice")).status_code == 400
    api.store.runs[job_id].state = "active"
    assert api.put(f"/v1/job/scheduled/{job_id}", headers=as_("alice")).status_code == 409
    r = api.delete(f"/v1/job/{job_id}", headers=as_("alice"))
    assert r.status_code == 200 and r.json()["state"] == "archived" and api.store.cancelled == [job_id]
    assert api.delete(f"/v1/job/{job_id}", headers=as_("alice")).status_code == 409
    r = api.put(f"/v1/job/scheduled/{job_id}", headers=as_("alice"))
    assert r.status_code == 200 and r.json()["state"] == "scheduled"


def test_job_status_fields(api):
    job_id = api.post("/v1/job", json=job(), headers=as_("alice")).json()["id"]
    body = api.get(f"/v1/job/{job_id}", headers=as_("alice")).json()
    assert set(body) >= {"id", "state", "attempts", "progress", "error", "createdAt", "startedAt",
                         "updatedAt",
                         "finishedAt", "data"}
    assert body["progress"] == {"total": 0, "processed": 0, "failed": 0}


def test_dac_lookup(api):
    r = api.get("/v1/dac/project/3010000.01", headers=as_("alice"))
    assert r.json()["collection"] == "/z/dccn/DAC_3010000.01"
    assert api.get("/v1/dac/project/3999999.01", headers=as_("alice")).status_code == 404


@pytest.mark.parametrize(("run", "tis", "state"), [
    ("queued", {}, "scheduled"),
    ("running", {"validate": "running"}, "active"),
    ("running", {"validate": "success", "transfer": "queued"}, "pending"),
    ("running", {"validate": "success", "transfer": "running"}, "active"),
    ("running", {"validate": "success", "transfer": "up_for_retry"}, "retry"),
    ("success", {}, "completed"),
    ("failed", {}, "archived"),
])
def test_state_mapping(run, tis, state):
    assert stager_state(run, tis) == state


def test_the_event_log_redaction_hides_drpass_at_any_depth():
    """What airflow/api_fastapi/logging/decorators.py (action_logging) stores of a request body:
    ``{k: secrets_masker.redact(v, k)}``; the stager plugin makes ``drpass`` a sensitive name."""
    from airflow._shared.secrets_masker import redact

    from sensitive_data.stager_api.app import hide_sensitive_fields

    hide_sensitive_fields()
    body = {"conf": {"drPass": "alice-secret", "stagerUser": "alice", "nested": [{"DRPASS": "x-secret"}]},
            "dag_run_id": "r"}
    stored = {k: redact(v, k) for k, v in body.items()}
    assert stored["conf"]["drPass"] == "***" and stored["conf"]["nested"][0]["DRPASS"] == "***"
    assert stored["conf"]["stagerUser"] == "alice" and stored["dag_run_id"] == "r"
    hide_sensitive_fields()  # idempotent


def test_plugin_registers_the_api():
    from sensitive_data.plugin import SensitiveDataPlugin

    assert SensitiveDataPlugin.name == "sensitive_data"
    (entry,) = [a for a in SensitiveDataPlugin.fastapi_apps if a["url_prefix"] == "/stager"]
    paths = {r.path for r in entry["app"].routes}
    assert {"/v1/job", "/v1/jobs", "/v1/jobs/{state}", "/v1/job/{job_id}", "/v1/job/scheduled/{job_id}",
            "/v1/dac/project/{number}", "/v1/ping"} <= paths
