"""The data stager end to end: a real Airflow, the stager API on its API server, the iRODS, WebDAV
and SMTP stand-ins, jobs submitted over REST and checked through the API, the repository and e-mail.

Transfers run as researcher accounts (``sdp-researcher``, created when the tests run as root; see
tests/integration/stager/accounts.py), never as root: :func:`configure_stager` sets the deployment's
``stager_settings`` (allow-list, the Airflow-user -> POSIX/repository identities, the runner
interpreter, the streamer's storage) and the streamer's service account through the REST API.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import pwd
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from include.stager.irods import IrodsAccount, IrodsClient
from tests.integration.stager.accounts import (
    OTHER_RESEARCHER,
    RESEARCHER,
    STREAMER,
    ensure_user,
    give_to,
    me,
    runner_python,
)

ZONE = "nl.ru.donders"
ME = pwd.getpwuid(os.geteuid()).pw_name  # the researcher's Airflow account (tests/e2e/conftest.py)
_CONFIGURED: dict[int, dict] = {}


def posix_users() -> tuple[str, str, str]:
    """(researcher, other researcher, streamer service account) as POSIX users on this machine."""
    if os.geteuid() == 0:
        return tuple(ensure_user(n).pw_name for n in (RESEARCHER, OTHER_RESEARCHER, STREAMER))
    return me(), me(), me()  # a non-root worker runs transfers as itself only


def configure_stager(stack) -> dict:
    """Point the deployment's stager at this machine's test accounts and a shared storage root (once)."""
    if id(stack) in _CONFIGURED:
        return _CONFIGURED[id(stack)]
    researcher, other, streamer = posix_users()
    # under /tmp itself: pytest's own tmp dirs are 0700 and the researchers could not enter them
    storage = Path(tempfile.mkdtemp(prefix="stager-e2e-", dir="/tmp"))
    atexit.register(shutil.rmtree, storage, True)
    (storage / "project").mkdir(parents=True, exist_ok=True)
    for d in (storage, storage / "project"):
        os.chmod(d, 0o755)
    current = stack.api("GET", "/api/v2/variables/stager_settings")
    assert current.status_code == 200, current.text
    settings = json.loads(current.json()["value"])
    settings.update({
        "allowed_users": sorted({researcher, other, streamer}),
        "identities": {ME: {"stagerUser": [researcher], "drUser": ["alice"]},
                       "bob": {"stagerUser": [other], "drUser": ["bob"]}},
        "streamer_source": str(storage / "project" / "{projectId}" / "raw"),
    })
    if runner_python():
        settings["runner_python"] = runner_python()
    r = stack.api("PATCH", "/api/v2/variables/stager_settings",
                  json={"key": "stager_settings", "value": json.dumps(settings)})
    assert r.status_code == 200, r.text
    r = stack.api("PATCH", "/api/v2/connections/stager_streamer", params={"update_mask": ["extra"]},
                  json={"connection_id": "stager_streamer", "conn_type": "generic",
                        "extra": json.dumps({"stager_user": streamer})})
    assert r.status_code == 200, r.text
    _CONFIGURED[id(stack)] = {"researcher": researcher, "other": other, "streamer": streamer,
                              "storage": storage}
    return _CONFIGURED[id(stack)]


def researcher_dir(stack, name: str = "", owner: str | None = None) -> Path:
    """A fresh directory the researcher owns (pytest's tmp dirs are 0700 root)."""
    cfg = configure_stager(stack)
    path = cfg["storage"] / "home" / f"{name or 'w'}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    os.chmod(path.parent, 0o755)
    give_to(path, owner or cfg["researcher"])
    return path


def make_files(root: Path, n: int) -> None:
    for i in range(n):
        p = root / f"d{i % 5}" / f"f {i:04d}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"file {i}\n")
    (root / "empty dir").mkdir(parents=True, exist_ok=True)


def job(src: str, dst: str, password: str = "alice-secret", **kw) -> dict:
    stager_user = _CONFIGURED[next(iter(_CONFIGURED))]["researcher"] if _CONFIGURED else posix_users()[0]
    return {"title": f"e2e {uuid.uuid4().hex[:6]}", "stagerUser": stager_user,
            "stagerUserEmail": "alice@example.org", "drUser": "alice", "drPass": password, "srcURL": src,
            "dstURL": dst, **kw}


def stager(airflow, method: str, path: str, **kw) -> httpx.Response:
    return airflow.api(method, f"/stager/v1{path}", **kw)


def wait_job(airflow, job_id: str, states=("completed", "archived"), timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = stager(airflow, "GET", f"/job/{job_id}").json()
        if body["state"] in states:
            return body
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not reach {states}: {body}")


def mails(airflow) -> list[dict]:
    return httpx.get(f"http://127.0.0.1:{airflow.vars['SDP_SMTP_HTTP_PORT']}/messages").json()


def wait_mail(airflow, subject: str, timeout: float = 90) -> dict:
    """DAG callbacks run in the dag-processor, a little after the run ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in mails(airflow) if m["subject"] == subject]
        if found:
            return found[0]
        time.sleep(1)
    raise AssertionError(f"no mail {subject!r}; got {[m['subject'] for m in mails(airflow)]}")


def irods(airflow, user="alice", password="alice-secret") -> IrodsClient:
    return IrodsClient(IrodsAccount("127.0.0.1", int(airflow.vars["SDP_IRODS_PORT"]), ZONE, user, password))


@pytest.fixture(scope="module")
def ready(airflow):
    airflow.wait_for_dags(["data_stager_transfer", "data_stager_streamer"])
    airflow.unpause("data_stager_transfer")
    airflow.unpause("data_stager_streamer")
    configure_stager(airflow)
    assert stager(airflow, "GET", "/ping").json() == "pong"
    return airflow


@pytest.fixture
def rdir(ready):
    """A directory of the researcher's, removed afterwards."""
    made = []

    def make(name: str = "", owner: str | None = None) -> Path:
        made.append(researcher_dir(ready, name, owner))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def test_api_needs_airflow_authentication(ready):
    assert httpx.get(f"{ready.base_url}/stager/v1/jobs").status_code in (401, 403)
    bad = httpx.get(f"{ready.base_url}/stager/v1/jobs", headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code in (401, 403)


def test_upload_via_the_api_then_rerun_skips_everything(ready, rdir):
    src = rdir("src")
    make_files(src, 40)
    give_to(src, job("", "")["stagerUser"])
    coll = f"/{ZONE}/home/alice/e2e-{uuid.uuid4().hex[:8]}"
    doc = job(str(src), f"irods:{coll}")
    r = stager(ready, "POST", "/job", json=doc)
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    run = ready.api("GET", f"/api/v2/dags/data_stager_transfer/dagRuns/{job_id}").json()
    assert "alice-secret" not in str(run) and run["conf"]["drPass"]  # only ciphertext in the metadata DB
    assert run["conf"]["seal"].startswith("v1.") and run["conf"]["submittedBy"] == "admin"
    assert run["triggering_user_name"] == "admin"

    done = wait_job(ready, job_id)
    assert done["state"] == "completed", done
    assert done["progress"] == {"total": 40, "processed": 40, "failed": 0}
    assert done["attempts"] == 1 and "drPass" not in done["data"]
    with irods(ready) as c:
        colls, files = c.walk(coll)
    assert len(files) == 40 and "empty dir" in colls
    assert wait_mail(ready, f"[OK] {doc['title']} completed")["to"] == "alice@example.org"

    assert "alice-secret" not in ready.task_log("data_stager_transfer", job_id, "transfer")
    assert "alice-secret" not in ready.task_log("data_stager_transfer", job_id, "validate")
    assert stager(ready, "PUT", f"/job/scheduled/{job_id}").status_code == 200  # re-run: same seal, same run
    again = wait_job(ready, job_id)
    assert again["state"] == "completed"
    result = ready.xcom("data_stager_transfer", job_id, "transfer")
    assert result["skipped"] == 40
    listed = stager(ready, "GET", "/jobs/completed").json()["jobs"]
    assert job_id in [j["id"] for j in listed]


def test_download_via_the_api_with_a_client_encrypted_password(ready, tmp_path, rdir):
    """A DCCN client's PKCS#1 v1.5 ciphertext: the API decrypts, checks and re-encrypts it for the job."""
    from include.stager.credentials import encrypt_password, load_private_key

    coll = f"/{ZONE}/home/alice/e2e-{uuid.uuid4().hex[:8]}"
    make_files(tmp_path / "src", 5)
    with irods(ready) as c:
        c.mkdirs(coll)
        for p in (tmp_path / "src").rglob("*.txt"):
            rel = p.relative_to(tmp_path / "src").as_posix()
            c.mkdirs(f"{coll}/{rel.rsplit('/', 1)[0]}")
            c.put(str(p), f"{coll}/{rel}", lambda n: None)
    key = load_private_key((Path(ready.vars["SDP_LOCAL"]) / "stager/keys/stager.pem").read_bytes())
    client_ciphertext = encrypt_password("alice-secret", key)
    down = rdir("down") / "down"
    r = stager(ready, "POST", "/job", json=job(f"i:{coll}", str(down), client_ciphertext))
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    stored = ready.api("GET", f"/api/v2/dags/data_stager_transfer/dagRuns/{job_id}").json()["conf"]["drPass"]
    assert stored != client_ciphertext  # re-encrypted, bound to this job
    assert wait_job(ready, job_id)["state"] == "completed"
    assert sorted(p.name for p in down.rglob("*.txt")) == sorted(p.name for p in (tmp_path / "src").rglob("*.txt"))
    researcher = pwd.getpwnam(job("", "")["stagerUser"])
    assert {p.stat().st_uid for p in down.rglob("*.txt")} == {researcher.pw_uid}  # written as the researcher
    assert "progress: total=5" in ready.task_log("data_stager_transfer", job_id, "transfer")


def test_plaintext_drpass_in_rest_conf_is_refused_before_it_is_stored(ready, tmp_path):
    (tmp_path / "f").write_text("x")
    conf = job(str(tmp_path), f"irods:/{ZONE}/home/alice/never")  # plaintext drPass
    conf.update(seal="v1." + "A" * 43, submittedBy="admin")
    resp = ready.trigger("data_stager_transfer", conf)
    assert resp.status_code == 400, resp.text
    assert "drPass" in resp.text  # (the 400 echoes the caller's own input back to the caller only)
    api_log = (ready.home / "logs" / "stack" / "airflow-api-server.log").read_text(errors="replace")
    assert "alice-secret" not in api_log
    runs = ready.api("GET", "/api/v2/dags/data_stager_transfer/dagRuns", params={"limit": 1000}).json()
    assert "alice-secret" not in json.dumps(runs)


def test_an_unsealed_rest_run_fails_without_retry_and_alerts(ready, tmp_path):
    """Even an Admin's run created directly through /api/v2 carries no seal: refused before any file."""
    (tmp_path / "f").write_text("x")
    conf = job(str(tmp_path), f"irods:/{ZONE}/home/alice/never")
    conf["drPass"] = base64.b64encode(os.urandom(256)).decode()  # ciphertext-shaped, not ours
    result = ready.run("data_stager_transfer", conf=conf, timeout=240)
    assert result.state == "failed"
    assert result.tasks["validate"] == "failed" and result.tasks["transfer"] == "upstream_failed"
    assert result.try_numbers.get("validate", 1) == 1
    assert "the job carries no seal" in result.log("validate")
    with irods(ready) as c:
        assert c.kind(f"/{ZONE}/home/alice/never") is None
    alert = wait_mail(ready, f"[ALERT] {conf['title']} failed")
    assert alert["to"] == "alice@example.org" and "stager-admin@localhost" in alert["cc"]
    raw = httpx.get(f"http://127.0.0.1:{ready.vars['SDP_SMTP_HTTP_PORT']}/messages/{alert['id']}").text
    import email as _email
    import email.policy

    body = _email.message_from_string(raw, policy=email.policy.default).get_body(("html",)).get_content()
    assert "the job carries no seal" in body


def test_a_wrong_credential_is_rejected_at_submission(ready, tmp_path):
    r = stager(ready, "POST", "/job", json=job(str(tmp_path), f"irods:/{ZONE}/home/alice/x", "wrong"))
    assert r.status_code == 400 and "HTTP 401" in r.json()["detail"]
    r = stager(ready, "POST", "/jobs", json={"jobs": [job(str(tmp_path), f"irods:/{ZONE}/home/alice/x"),
                                                      job(str(tmp_path), f"irods:/{ZONE}/home/alice/y",
                                                          "wrong")]})
    assert r.status_code == 207, r.text


def test_cancel_a_running_job(ready, rdir):
    src = rdir("src")
    make_files(src, 1500)
    give_to(src, job("", "")["stagerUser"])
    r = stager(ready, "POST", "/job", json=job(str(src), f"irods:/{ZONE}/home/alice/e2e-cancel-"
                                               + uuid.uuid4().hex[:6]))
    job_id = r.json()["id"]
    wait_job(ready, job_id, states=("active",), timeout=120)
    deadline = time.monotonic() + 60
    while (stager(ready, "GET", f"/job/{job_id}").json()["progress"]["total"] == 0
           and time.monotonic() < deadline):
        time.sleep(0.3)
    r = stager(ready, "DELETE", f"/job/{job_id}")
    assert r.status_code == 200, r.text
    done = wait_job(ready, job_id)
    assert done["state"] == "archived"
    assert done["progress"]["processed"] < 1500


def test_streamer_puts_raw_data_into_the_dac_collection(ready):
    cfg = configure_stager(ready)
    session = f"sub-{uuid.uuid4().hex[:6]}"
    src = cfg["storage"] / "project" / "3010000.01" / "raw" / session
    make_files(src, 3)
    result = ready.run("data_stager_streamer", conf={"projectId": "3010000.01", "srcPath": str(src),
                                                    "modality": "MEG"}, timeout=120)
    assert result.state == "success", result
    doc = result.xcom("resolve")
    assert doc["dstURL"] == f"irods:/{ZONE}/dccn/DAC_3010000.01/raw/{session}"
    assert (doc["timeout"], doc["timeout_noprogress"]) == (3600, 1800)
    assert doc["stagerUser"] == cfg["streamer"] and doc["seal"].startswith("v1.")
    run_id = result.xcom("resolve", key="run_id")
    final = ready.wait("data_stager_transfer", run_id, timeout=240)
    assert final.state == "success", final
    with irods(ready, "stager-streamer", "streamer-secret") as c:
        assert len(c.walk(f"/{ZONE}/dccn/DAC_3010000.01/raw/{session}")[1]) == 3


def test_a_researcher_sees_and_acts_on_their_own_jobs_only(ready, rdir):
    """Real Airflow accounts (role Researcher): the submitter and another researcher."""
    researcher, other = ME, "bob"
    as_researcher = {"Authorization": f"Bearer {ready.user_token(researcher, ready.passwords[researcher])}"}
    as_other = {"Authorization": f"Bearer {ready.user_token(other, ready.passwords[other])}"}
    src = rdir("src")
    make_files(src, 3)
    give_to(src, job("", "")["stagerUser"])
    doc = job(str(src), f"irods:/{ZONE}/home/alice/own-{uuid.uuid4().hex[:8]}")
    base = f"{ready.base_url}/stager/v1"
    # a researcher may only submit as their own POSIX and repository accounts (stager setting identities)
    r = httpx.post(f"{base}/job", json={**doc, "stagerUser": configure_stager(ready)["other"] + "x"},
                   headers=as_researcher, timeout=60)
    assert r.status_code == 400 and "may only submit jobs as stagerUser" in r.text
    r = httpx.post(f"{base}/job", json=doc, headers=as_researcher, timeout=60)
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    assert httpx.get(f"{base}/job/{job_id}", headers=as_researcher, timeout=30).status_code == 200
    assert httpx.get(f"{base}/job/{job_id}", headers=as_other, timeout=30).status_code == 404
    assert httpx.delete(f"{base}/job/{job_id}", headers=as_other, timeout=30).status_code == 404
    assert httpx.put(f"{base}/job/scheduled/{job_id}", headers=as_other, timeout=30).status_code == 404
    listed = httpx.get(f"{base}/jobs", headers=as_other, timeout=30).json()["jobs"]
    assert job_id not in {j["id"] for j in listed}
    mine = httpx.get(f"{base}/jobs", headers=as_researcher, timeout=30).json()["jobs"]
    assert job_id in {j["id"] for j in mine}
    assert wait_job(ready, job_id)["state"] == "completed"
