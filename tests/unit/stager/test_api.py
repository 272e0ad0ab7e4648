"""The stager API's own rules, with Airflow's parts (runs, keys, WebDAV, auth) replaced by fakes."""

from __future__ import annotations

from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Request
from fastapi.testclient import TestClient

from include.stager.credentials import decrypt_password, encrypt_password
from include.stager.errors import UserError
from sensitive_data.stager_api.app import Caller, Services, create_app
from sensitive_data.stager_api.runs import JobRecord, stager_state

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeStore:
    def __init__(self):
        self.runs: dict[str, JobRecord] = {}
        self.cancelled, self.rerun_ids = [], []

    def create(self, conf, owner):
        job_id = f"stager__{len(self.runs) + 1}"
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


def check(user, password):
    if password != "good":
        raise UserError(f"the data repository rejected the credential of {user!r} (HTTP 401)")


@pytest.fixture
def api():
    store = FakeStore()
    services = Services(store=store, decrypt=lambda v: decrypt_password(v, KEY),
                        encrypt=lambda p: encrypt_password(p, KEY), check_credential=check,
                        dac_collections=lambda: {"3010000.01": "/z/dccn/DAC_3010000.01"})
    users = {"alice": Caller("alice", False), "bob": Caller("bob", False), "admin": Caller("admin", True)}

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


def test_submit_checks_the_credential_and_stores_only_ciphertext(api):
    r = api.post("/v1/job", json=job(), headers=as_("alice"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "scheduled" and "drPass" not in body["data"] and "good" not in r.text
    stored = api.store.runs[body["id"]].conf["drPass"]
    assert stored != "good" and decrypt_password(stored, KEY) == "good"


def test_an_already_encrypted_drpass_is_accepted(api):
    r = api.post("/v1/job", json=job(password=encrypt_password("good", KEY)), headers=as_("alice"))
    assert r.status_code == 200


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
