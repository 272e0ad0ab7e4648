"""Attacks on the data stager with real accounts against a real deployment (tests/security/conftest.py).

Each attack asserts the refusal (a clear user error, no retry) and that nothing was read, written
or leaked: the destination does not exist afterwards, no transfer process ran, no secret appears
in what the attacker can read. Whatever the attacker cannot even reach through ``/api/v2`` (FAB
per-DAG permissions) is also tried as an Admin, to show the task itself refuses it (a seal, the
account rules and the job-bound ``drPass`` are checked where the work runs, whoever triggered it).
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

import httpx
import pytest

from tests.e2e.test_stager import (
    ZONE,
    configure_stager,
    irods,
    make_files,
    researcher_dir,
    wait_job,
    wait_mail,
)
from tests.integration.stager.accounts import give_to
from tests.security.conftest import assert_no_secret

TRANSFER = "data_stager_transfer"
STREAMER_DAG = "data_stager_streamer"
RUNS = f"/api/v2/dags/{TRANSFER}/dagRuns"


@pytest.fixture(scope="module")
def stager(stack):
    stack.wait_for_dags([TRANSFER, STREAMER_DAG])
    stack.unpause(TRANSFER)
    stack.unpause(STREAMER_DAG)
    return configure_stager(stack)


def dest() -> str:
    return f"/{ZONE}/home/alice/attack-{uuid.uuid4().hex[:8]}"


def nothing_written(stack, coll: str) -> None:
    with irods(stack) as c:
        assert c.kind(coll) is None, f"{coll} was written"


def doc(src: str, coll: str, stager_user: str, password: str = "alice-secret", **kw) -> dict:
    return {"title": f"attack {uuid.uuid4().hex[:6]}", "stagerUser": stager_user,
            "stagerUserEmail": "alice@example.org", "drUser": "alice", "drPass": password, "srcURL": src,
            "dstURL": f"irods:{coll}", **kw}


def refused_in_validate(stack, run_id: str, match: str) -> None:
    """The run failed in ``validate`` on its first try with ``match``; ``transfer`` never started."""
    result = stack.wait(TRANSFER, run_id, timeout=240)
    assert result.state == "failed", result
    assert result.tasks["validate"] == "failed" and result.tasks["transfer"] == "upstream_failed", result
    assert result.try_numbers.get("validate", 1) == 1
    assert match in result.log("validate"), result.log("validate")[-2000:]


def sealed_job(stack, as_, cfg, rdir_owner=None) -> tuple[str, dict, str]:
    """A real job of researcher A (through /stager/v1): (run id, its conf as stored, destination)."""
    src = researcher_dir(stack, "a-src")
    make_files(src, 2)
    give_to(src, cfg["researcher"])
    coll = dest()
    r = as_("researcher").post("/stager/v1/job", json=doc(str(src), coll, cfg["researcher"]))
    assert r.status_code == 200, r.text
    job_id = r.json()["id"]
    conf = stack.api("GET", f"{RUNS}/{job_id}").json()["conf"]
    return job_id, conf, coll


def admin_trigger(stack, conf: dict, run_id: str | None = None) -> str:
    body = {"logical_date": None, "conf": conf, **({"dag_run_id": run_id} if run_id else {})}
    r = stack.api("POST", RUNS, json=body)
    assert r.status_code == 200, r.text
    return r.json()["dag_run_id"]


# ---------------------------------------------------------------- never as root, never as somebody else
@pytest.mark.parametrize("user", ["root", "0", "daemon"])
def test_a_researcher_cannot_trigger_a_transfer_directly(stack, as_, stager, user, tmp_path):
    """/api/v2 with stagerUser root / 0 / daemon: the researcher has no permission at all."""
    (tmp_path / "f").write_text("x")
    coll = dest()
    r = as_("researcher").post(RUNS, json={"logical_date": None, "conf": doc(str(tmp_path), coll, user)})
    assert r.status_code in (401, 403), r.text
    runs = stack.api("GET", RUNS, params={"limit": 1000}).json()["dag_runs"]
    assert not [x for x in runs if x["conf"].get("dstURL") == f"irods:{coll}"]
    nothing_written(stack, coll)


@pytest.mark.parametrize(("user", "match"), [("root", "transfers never run as root"),
                                              ("daemon", "is a system account")])
def test_root_and_system_accounts_are_refused_even_in_a_sealed_job(stack, stager, user, match):
    """An Admin may submit for any stagerUser through /stager/v1, so the job is validly sealed: the
    task still refuses root and system accounts, and the root-only source is never read."""
    secret_dir = researcher_dir(stack, "root-only", owner="root")
    (secret_dir / "secret.txt").write_text("root only\n")
    os.chmod(secret_dir, 0o700)
    coll = dest()
    r = stack.api("POST", "/stager/v1/job", json=doc(str(secret_dir), coll, user))
    assert r.status_code == 200, r.text
    refused_in_validate(stack, r.json()["id"], match)
    nothing_written(stack, coll)


def test_a_numeric_stager_user_is_refused_by_the_api_and_by_the_task(stack, stager, tmp_path):
    coll = dest()
    r = stack.api("POST", "/stager/v1/job", json=doc(str(tmp_path), coll, "0"))
    assert r.status_code == 400 and "not a valid user name" in r.text
    run_id = admin_trigger(stack, {**doc(str(tmp_path), coll, "0", base64.b64encode(os.urandom(256)).decode())})
    refused_in_validate(stack, run_id, "job refused")
    nothing_written(stack, coll)


# ---------------------------------------------------------------- another researcher's credential
def test_another_researchers_druser_and_ciphertext_are_refused_through_the_stager_api(stack, as_, stager):
    a_job, a_conf, _ = sealed_job(stack, as_, stager)
    coll = dest()
    src = researcher_dir(stack, "b-src", owner=stager["other"])
    # B names A's repository account with A's stored ciphertext ...
    r = as_("researcher2").post("/stager/v1/job", json=doc(str(src), coll, stager["other"], a_conf["drPass"]))
    assert r.status_code == 400 and "may not use the repository account 'alice'" in r.text
    # ... or A's plaintext-free client ciphertext under B's own repository account
    r = as_("researcher2").post("/stager/v1/job", json={**doc(str(src), coll, stager["other"], a_conf["drPass"]),
                                                        "drUser": "bob"})
    assert r.status_code == 400, r.text
    # ... or pretends to be A's POSIX account
    r = as_("researcher2").post("/stager/v1/job", json=doc(str(src), coll, stager["researcher"]))
    assert r.status_code == 400 and "may only submit jobs as stagerUser" in r.text
    listed = as_("researcher2").get("/stager/v1/jobs").json()["jobs"]
    assert all(j["data"]["dstURL"] != f"irods:{coll}" for j in listed) and a_job not in {j["id"] for j in listed}
    nothing_written(stack, coll)


def test_another_researchers_run_conf_replayed_through_the_rest_api_is_refused(stack, as_, stager):
    """A's whole sealed conf (ciphertext and seal) in a new run: B cannot trigger it at all; an Admin's
    replay fails the seal (other run id), a replay under a new dstURL too, and nothing moves."""
    a_job, a_conf, a_coll = sealed_job(stack, as_, stager)
    assert wait_job(stack, a_job)["state"] == "completed"
    coll = dest()
    stolen = {**a_conf, "dstURL": f"irods:{coll}"}
    r = as_("researcher2").post(RUNS, json={"logical_date": None, "conf": stolen})
    assert r.status_code in (401, 403), r.text
    for conf, match in ((a_conf, "does not match this run"), (stolen, "does not match this run")):
        refused_in_validate(stack, admin_trigger(stack, conf), match)
    nothing_written(stack, coll)
    with irods(stack) as c:  # A's own destination holds exactly A's two files, written once
        assert len(c.walk(a_coll)[1]) == 2


# ---------------------------------------------------------------- seals
def test_missing_forged_and_replayed_seals_are_refused(stack, as_, stager):
    _job, a_conf, _ = sealed_job(stack, as_, stager)
    cases = []
    coll = dest()
    base = {**a_conf, "dstURL": f"irods:{coll}"}
    cases.append(({k: v for k, v in base.items() if k not in ("seal", "submittedBy")}, "carries no seal"))
    forged = "v1." + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    cases.append(({**base, "seal": forged}, "does not match this run"))
    cases.append(({**a_conf}, "does not match this run"))  # A's seal replayed verbatim into a new run
    cases.append(({**a_conf, "submittedBy": "admin"}, "does not match this run"))
    for conf, match in cases:
        refused_in_validate(stack, admin_trigger(stack, conf), match)
    nothing_written(stack, coll)


# ---------------------------------------------------------------- the streamer
def streamer_source(stager, project="3010000.01"):
    raw = stager["storage"] / "project" / project / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for d in (raw.parent, raw):
        os.chmod(d, 0o755)
    return raw


def run_streamer(stack, as_, src) -> tuple[httpx.Response, str]:
    r = as_("streamer").post(f"/api/v2/dags/{STREAMER_DAG}/dagRuns",
                             json={"logical_date": None,
                                   "conf": {"projectId": "3010000.01", "srcPath": str(src), "modality": "MEG"}})
    assert r.status_code == 200, r.text
    return r, r.json()["dag_run_id"]


@pytest.mark.parametrize("case", ["dotdot", "symlink-out", "other-project", "outside"])
def test_streamer_sources_outside_the_projects_storage_are_refused(stack, as_, stager, case):
    raw = streamer_source(stager)
    other = streamer_source(stager, "3055000.01") / f"sub-{uuid.uuid4().hex[:6]}"
    make_files(other, 2)
    link = raw / f"link-{uuid.uuid4().hex[:6]}"
    link.symlink_to(other)
    src = {"dotdot": f"{raw}/../../3055000.01/raw/{other.name}", "symlink-out": str(link),
           "other-project": str(other), "outside": "/root"}[case]
    _r, run_id = run_streamer(stack, as_, src)
    result = stack.wait(STREAMER_DAG, run_id, timeout=180)
    assert result.state == "failed" and result.tasks["resolve"] == "failed", result
    assert result.tasks["submit"] == "upstream_failed"
    assert result.try_numbers.get("resolve", 1) == 1
    log = result.log("resolve")
    assert any(m in log for m in ("'..'", "symbolic link", "outside the raw storage")), log[-1500:]
    nothing_written(stack, f"/{ZONE}/dccn/DAC_3010000.01/raw/{other.name}")


def test_streamer_with_a_root_only_source_reads_nothing(stack, as_, stager):
    """Inside the project, but readable by root only: the transfer runs as the unprivileged service
    account and fails (permission denied, a user error), nothing reaches the repository."""
    raw = streamer_source(stager)
    session = raw / f"sub-{uuid.uuid4().hex[:6]}"
    make_files(session, 3)
    os.chmod(session, 0o700)  # owned by root (the tests' user) when run as root
    _r, run_id = run_streamer(stack, as_, session)
    result = stack.wait(STREAMER_DAG, run_id, timeout=180)
    assert result.state == "success", result
    transfer_id = result.xcom("resolve", key="run_id")
    final = stack.wait(TRANSFER, transfer_id, timeout=240)
    if os.geteuid() == 0:
        assert final.state == "failed" and final.tasks["transfer"] == "failed", final
        assert final.try_numbers.get("transfer", 1) == 1  # a user error: no retry
        assert "permission denied" in final.log("transfer").lower()
        target = f"/{ZONE}/dccn/DAC_3010000.01/raw/{session.name}"
        with irods(stack, "stager-streamer", "streamer-secret") as c:
            kind = c.kind(target)
            assert kind in (None, "coll")  # at most the (empty) top level the engine creates first
            if kind == "coll":
                assert c.walk(target)[1] == {}
    else:  # not root: the service account is the tests' own user, who may read its own files
        assert final.state == "success", final


# ---------------------------------------------------------------- nothing in the event log
def test_a_plaintext_drpass_never_reaches_the_event_log(stack, as_, stager, tmp_path, configured_secrets):
    title = f"plaintext {uuid.uuid4().hex[:8]}"
    conf = {**doc(str(tmp_path), dest(), stager["researcher"]), "title": title}
    r = stack.api("POST", RUNS, json={"logical_date": None, "conf": conf})
    assert r.status_code == 400 and "drPass" in r.text  # the Param schema refuses it
    r = as_("researcher").post(RUNS, json={"logical_date": None, "conf": conf})  # (no permission at all)
    assert r.status_code in (401, 403)
    # the entry exists (an Admin sees it), with the value hidden
    deadline, entry = time.monotonic() + 30, None
    while entry is None and time.monotonic() < deadline:
        logs = stack.api("GET", "/api/v2/eventLogs", params={"event": "trigger_dag_run", "limit": 1000,
                                                               "order_by": "-id"}).json()["event_logs"]
        entry = next((e for e in logs if title in (e.get("extra") or "")), None)
        if entry is None:
            time.sleep(1)
    assert entry is not None, "the refused trigger was not recorded at all"
    assert "alice-secret" not in json.dumps(entry)
    assert json.loads(entry["extra"])["conf"]["drPass"] == "***"
    for who in ("viewer", "researcher", "researcher2"):
        r = as_(who).get("/api/v2/eventLogs", params={"limit": 1000})
        assert r.status_code in (200, 403), r.text
        assert "alice-secret" not in r.text
        assert_no_secret(r.text, configured_secrets, f"/api/v2/eventLogs as {who}")


# ---------------------------------------------------------------- notifications
def test_a_title_with_cr_lf_still_sends_the_alert_without_injecting_a_header(stack, as_, stager):
    coll = dest()
    missing = researcher_dir(stack, "gone") / "missing"
    title = f"crlf {uuid.uuid4().hex[:6]}\r\nBcc: evil@example.org"
    r = as_("researcher").post("/stager/v1/job",
                               json={**doc(str(missing), coll, stager["researcher"]), "title": title})
    assert r.status_code == 200, r.text
    assert wait_job(stack, r.json()["id"])["state"] == "archived"
    alert = wait_mail(stack, f"[ALERT] {' '.join(title.split())} failed")
    assert "evil@example.org" not in alert["envelope_to"]
    assert set(alert["envelope_to"].split(", ")) == {"alice@example.org", "stager-admin@localhost"}
    nothing_written(stack, coll)
