"""The worker side of a job: operators and the shared retry policy, with connections from the environment."""

from __future__ import annotations

import base64
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from airflow.sdk.definitions.retry_policy import RetryAction
from airflow.sdk.exceptions import AirflowFailException

from include.stager import seal as job_seal
from include.stager.credentials import decrypt_bound, encrypt_bound, encrypt_password, load_private_key
from include.stager.errors import TransientError, UserError
from include.stager.job import parse_job
from sensitive_data.common.errors import TransientFailure
from sensitive_data.common.retries import RETRIES_TRANSFER, ErrorRetryPolicy
from sensitive_data.operators.stager import (
    StagerStreamerJobOperator,
    StagerTransferOperator,
    StagerValidateJobOperator,
)
from tests.integration.stager.accounts import (
    STREAMER,
    ensure_user,
    give_to,
    me,
    runner_python,
    shared_dir,
    transfer_user,
)
from tests.integration.stager.conftest import ZONE, make_tree

SEAL_KEY = os.urandom(32)


class FakeTI:
    try_number = 1

    def __init__(self):
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


@pytest.fixture
def connections(irods_vars, monkeypatch):
    keyfile = Path(irods_vars["SDP_LOCAL"]) / "stager" / "keys" / "stager.pem"
    monkeypatch.setenv("AIRFLOW_CONN_IRODS", json.dumps(
        {"conn_type": "generic", "host": "127.0.0.1", "port": int(irods_vars["SDP_IRODS_PORT"]),
         "extra": {"zone": ZONE}}))
    monkeypatch.setenv("AIRFLOW_CONN_STAGER_KEYS", json.dumps(
        {"conn_type": "generic", "extra": {"private_key_file": str(keyfile)}}))
    streamer = STREAMER if os.geteuid() == 0 else me()
    if os.geteuid() == 0:
        ensure_user(STREAMER)
    monkeypatch.setenv("AIRFLOW_CONN_STAGER_STREAMER", json.dumps(
        {"conn_type": "generic", "login": "stager-streamer", "password": "streamer-secret",
         "extra": {"stager_user": streamer}}))
    monkeypatch.setenv("AIRFLOW_CONN_STAGER_SEAL", json.dumps(
        {"conn_type": "generic", "password": base64.b64encode(SEAL_KEY).decode()}))
    monkeypatch.setenv("SDP_STAGER_REPORT_INTERVAL", "0.2")
    monkeypatch.setenv("SDP_STAGER_ALLOWED_USERS", f"{transfer_user()},{streamer}")
    if runner_python():
        monkeypatch.setenv("SDP_STAGER_RUNNER_PYTHON", runner_python())
    return load_private_key(keyfile.read_bytes())


@pytest.fixture
def workdir():
    path = shared_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Run:
    def __init__(self, run_id: str, triggering_user_name: str | None = "alice"):
        self.run_id, self.triggering_user_name, self.dag_id = run_id, triggering_user_name, "data_stager_transfer"


def job(src, dst, key, password="alice-secret", run_id="stager__t1", submitted_by="alice", **kw):
    """A job as the stager API makes it: drPass bound to the job, sealed for ``run_id``."""
    doc = {"title": "t", "stagerUser": transfer_user(), "stagerUserEmail": "a@example.org",
           "drUser": "alice", "srcURL": src, "dstURL": dst, **kw}
    doc["drPass"] = encrypt_bound(password, key, dr_user=doc["drUser"], stager_user=doc["stagerUser"],
                                  job_id=run_id)
    parsed = parse_job(doc)
    doc["submittedBy"] = submitted_by
    doc["seal"] = job_seal.seal({**parsed.public(), "drPass": parsed.drPass}, run_id, submitted_by, SEAL_KEY)
    return doc


def run(op, params, run_id="stager__t1", triggering_user="alice"):
    ti = FakeTI()
    try:
        return op.execute({"params": params, "ti": ti, "run_id": run_id,
                           "dag_run": Run(run_id, triggering_user)}), ti
    except BaseException as exc:
        exc.ti = ti
        raise


def test_transfer_operator_runs_the_job_and_pushes_progress(workdir, connections, coll):
    files = make_tree(workdir / "src", small_files=20)
    give_to(workdir / "src", transfer_user())
    result, ti = run(StagerTransferOperator(task_id="transfer"), job(str(workdir / "src"), f"irods:{coll}",
                                                                    connections))
    assert result["processed"] == len(files) and result["failed"] == 0
    assert ti.xcom["progress"]["processed"] == len(files)
    assert "alice-secret" not in json.dumps(ti.xcom) + json.dumps(result)


def test_transfer_settings_reach_the_child(tmp_path, connections, coll, monkeypatch):
    monkeypatch.setenv("SDP_STAGER_RUNNER_PYTHON", "/usr/bin/python3")
    monkeypatch.setenv("SDP_STAGER_NUM_THREADS", "3")
    monkeypatch.setenv("SDP_STAGER_MIN_UID", "999")
    monkeypatch.setenv("SDP_STAGER_PARALLEL_THRESHOLD", "1048576")
    seen = {}

    def fake_run_as(spec, stager_user, **kw):
        seen.update(spec=dict(spec), python=kw["python"], rules=kw["rules"])
        return {"processed": 0, "skipped": 0, "bytes_done": 0, "total": 0, "failed": 0, "bytes_total": 0}

    monkeypatch.setattr("sensitive_data.operators.stager.run_as", fake_run_as)
    run(StagerTransferOperator(task_id="transfer"), job(str(tmp_path), f"irods:{coll}", connections))
    assert seen["python"] == "/usr/bin/python3"
    assert (seen["spec"]["num_threads"], seen["spec"]["parallel_threshold"]) == (3, 1 << 20)
    assert seen["rules"]["min_uid"] == 999 and transfer_user() in seen["rules"]["allowed_users"]


def _refused(params, match, **kw):
    for op in (StagerValidateJobOperator(task_id="validate"), StagerTransferOperator(task_id="transfer")):
        with pytest.raises(AirflowFailException, match=match) as info:
            run(op, params, **kw)
        assert "job refused" in info.value.ti.xcom["error"]
        assert "alice-secret" not in str(info.value)
        # AirflowFailException: Airflow fails the task at once, no retry policy is asked
        assert type(info.value) is AirflowFailException


def test_a_sealed_job_is_accepted_by_validate(tmp_path, connections, coll):
    result, _ti = run(StagerValidateJobOperator(task_id="validate"), job(str(tmp_path), f"irods:{coll}", connections))
    assert result["stagerUser"] == transfer_user() and "drPass" not in result


def test_plaintext_drpass_is_refused_before_any_transfer(tmp_path, connections, coll):
    doc = job(str(tmp_path), f"irods:{coll}", connections)
    _refused({**doc, "drPass": "alice-secret"}, "drPass must be RSA-encrypted|does not match")


def test_missing_forged_and_mismatched_seals_are_refused(tmp_path, connections, coll):
    doc = job(str(tmp_path), f"irods:{coll}", connections)
    _refused({k: v for k, v in doc.items() if k != "seal"}, "carries no seal")
    forged = job_seal.seal({**doc}, "stager__t1", "alice", os.urandom(32))
    _refused({**doc, "seal": forged}, "does not match this run")
    _refused({**doc, "dstURL": f"irods:/{ZONE}/home/bob/x"}, "does not match this run")
    _refused(doc, "does not match this run", run_id="stager__t2")  # replayed into another run
    _refused(doc, "triggered by 'bob'", triggering_user="bob")      # re-submitted by someone else


def test_a_client_ciphertext_or_one_of_another_job_is_refused_by_the_tasks(tmp_path, connections, coll):
    """A PKCS#1 v1.5 ciphertext, validly sealed (as if the seal key leaked), still does not open here."""
    doc = job(str(tmp_path), f"irods:{coll}", connections)
    for value in (encrypt_password("alice-secret", connections),
                  encrypt_bound("alice-secret", connections, dr_user="alice", stager_user=transfer_user(),
                                job_id="stager__other")):
        resealed = {**doc, "drPass": value}
        parsed = parse_job(resealed)
        resealed["seal"] = job_seal.seal({**parsed.public(), "drPass": value}, "stager__t1", "alice", SEAL_KEY)
        _refused(resealed, "not encrypted for this job")


@pytest.mark.parametrize("user", ["root", "daemon", "nobody"])
def test_root_and_system_accounts_are_refused_even_when_sealed(tmp_path, connections, coll, monkeypatch, user):
    monkeypatch.setenv("SDP_STAGER_ALLOWED_USERS", f"{user},{transfer_user()}")
    _refused(job(str(tmp_path), f"irods:{coll}", connections, stagerUser=user), "root|system account|above")


def test_wrong_credential_fails_without_retry(workdir, connections, coll):
    (workdir / "f").write_text("x")
    give_to(workdir, transfer_user())
    with pytest.raises(AirflowFailException, match="rejected the data-repository credential") as info:
        run(StagerTransferOperator(task_id="transfer"),
            job(str(workdir), f"irods:{coll}", connections, "bad"))
    assert type(info.value) is AirflowFailException  # failed at once, no retry policy is asked
    assert "rejected the data-repository credential" in info.value.ti.xcom["error"]  # the job status


def test_transient_errors_back_off_30s_times_attempt():
    import importlib

    transfer = importlib.import_module("data_stager_transfer").dag.task_dict["transfer"]
    assert transfer.retries == 4
    policy = transfer.retry_policy
    assert isinstance(policy, ErrorRetryPolicy) and policy.settings == RETRIES_TRANSFER
    for attempt in (1, 2, 3, 4):
        for error in (TransientError("network"), TransientFailure("transient error, will retry: network")):
            decision = policy.evaluate(error, try_number=attempt, max_tries=5)
            assert decision.action == RetryAction.RETRY
            assert decision.retry_delay.total_seconds() == 30 * attempt
    assert policy.evaluate(UserError("no such source"), try_number=1, max_tries=5).action == RetryAction.FAIL


def test_a_transient_failure_reaches_the_job_status_and_is_retried(tmp_path, connections, coll, monkeypatch):
    def failing_run_as(spec, stager_user, **kw):
        raise TransientError("the repository is restarting")

    monkeypatch.setattr("sensitive_data.operators.stager.run_as", failing_run_as)
    with pytest.raises(TransientFailure, match="the repository is restarting") as info:
        run(StagerTransferOperator(task_id="transfer"), job(str(tmp_path), f"irods:{coll}", connections))
    assert "the repository is restarting" in info.value.ti.xcom["error"]


@pytest.fixture
def project(workdir, monkeypatch):
    raw = workdir / "project" / "3010000.01" / "raw"
    (raw / "sub-01" / "ses-mri01").mkdir(parents=True)
    (workdir / "project" / "3055000.01" / "raw" / "sub-09").mkdir(parents=True)
    (raw / "link-out").symlink_to(workdir / "project" / "3055000.01" / "raw" / "sub-09")
    monkeypatch.setenv("SDP_STAGER_STREAMER_SOURCE", str(workdir / "project" / "{projectId}" / "raw"))
    return raw


def test_streamer_builds_a_sealed_bound_job_into_the_dac_collection(connections, project, monkeypatch):
    monkeypatch.setenv("SDP_STAGER_DAC_COLLECTIONS", json.dumps({"3010000.01": f"/{ZONE}/dccn/DAC_3010000.01"}))
    params = {"projectId": "3010000.01", "srcPath": str(project / "sub-01" / "ses-mri01"), "modality": "MRI"}
    doc, ti = run(StagerStreamerJobOperator(task_id="resolve"), params, run_id="streamer-run", triggering_user="lab")
    job_id = ti.xcom["run_id"]
    assert doc["dstURL"] == f"irods:/{ZONE}/dccn/DAC_3010000.01/raw/sub-01/ses-mri01"
    assert (doc["timeout"], doc["timeout_noprogress"]) == (10800, 600)
    assert doc["drUser"] == "stager-streamer" and "streamer-secret" not in json.dumps(doc)
    assert doc["stagerUser"] == (STREAMER if os.geteuid() == 0 else me()) and doc["submittedBy"] == "lab"
    assert decrypt_bound(doc["drPass"], connections, dr_user="stager-streamer", stager_user=doc["stagerUser"],
                         job_id=job_id) == "streamer-secret"
    # the transfer run the streamer triggers (run id job_id, triggering user inherited) accepts it
    result, _ = run(StagerValidateJobOperator(task_id="validate"), doc, run_id=job_id, triggering_user="lab")
    assert result["srcURL"] == os.path.realpath(params["srcPath"])
    with pytest.raises(AirflowFailException, match="project 3999999.01"):
        run(StagerStreamerJobOperator(task_id="resolve"), {**params, "projectId": "3999999.01"})


@pytest.mark.parametrize(("src", "match"), [
    ("{raw}/../../3055000.01/raw/sub-09", "'..'"),
    ("{raw}/link-out", "symbolic link"),
    ("{other}/sub-09", "outside the raw storage"),
    ("/root", "outside the raw storage"),
])
def test_streamer_sources_outside_the_projects_raw_storage_are_refused(connections, project, src, match):
    other = project.parent.parent / "3055000.01" / "raw"
    params = {"projectId": "3010000.01", "srcPath": src.format(raw=project, other=other), "modality": "MEG"}
    with pytest.raises(AirflowFailException, match=match) as info:
        run(StagerStreamerJobOperator(task_id="resolve"), params)
    assert "run_id" not in info.value.ti.xcom  # nothing was submitted


def test_streamer_refuses_a_root_service_account(connections, project, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_STAGER_STREAMER", json.dumps(
        {"conn_type": "generic", "login": "stager-streamer", "password": "streamer-secret",
         "extra": {"stager_user": "root"}}))
    monkeypatch.setenv("SDP_STAGER_ALLOWED_USERS", "root")
    params = {"projectId": "3010000.01", "srcPath": str(project / "sub-01"), "modality": "MEG"}
    with pytest.raises(AirflowFailException, match="never run as root"):
        run(StagerStreamerJobOperator(task_id="resolve"), params)


def test_a_new_job_id_is_unique():
    from include.stager.job import new_job_id

    assert len({new_job_id() for _ in range(100)}) == 100 and uuid
