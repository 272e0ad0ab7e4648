"""The worker side of a job: operators and retry policy, with connections from the environment."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from airflow.sdk.definitions.retry_policy import RetryAction
from airflow.sdk.exceptions import AirflowFailException

from include.stager.credentials import encrypt_password, load_private_key
from include.stager.errors import TransientError
from sensitive_data.operators.stager import (
    StagerRetryPolicy,
    StagerStreamerJobOperator,
    StagerTransferOperator,
    StagerValidateJobOperator,
)
from tests.integration.stager.conftest import ZONE, make_tree


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
    monkeypatch.setenv("AIRFLOW_CONN_STAGER_STREAMER", json.dumps(
        {"conn_type": "generic", "login": "stager-streamer", "password": "streamer-secret"}))
    monkeypatch.setenv("SDP_STAGER_REPORT_INTERVAL", "0.2")
    return load_private_key(keyfile.read_bytes())


def job(src, dst, key, password="alice-secret", **kw):
    return {"title": "t", "stagerUser": pwd.getpwuid(os.geteuid()).pw_name,
            "stagerUserEmail": "a@example.org",
            "drUser": "alice", "drPass": encrypt_password(password, key), "srcURL": src, "dstURL": dst, **kw}


def run(op, params):
    ti = FakeTI()
    try:
        return op.execute({"params": params, "ti": ti}), ti
    except BaseException as exc:
        exc.ti = ti
        raise


def test_transfer_operator_runs_the_job_and_pushes_progress(tmp_path, connections, coll):
    files = make_tree(tmp_path / "src", small_files=20)
    result, ti = run(StagerTransferOperator(task_id="transfer"), job(str(tmp_path / "src"), f"irods:{coll}",
                                                                    connections))
    assert result["processed"] == len(files) and result["failed"] == 0
    assert ti.xcom["progress"]["processed"] == len(files)
    assert "alice-secret" not in json.dumps(ti.xcom) + json.dumps(result)


def test_transfer_settings_reach_the_child(tmp_path, connections, coll, monkeypatch):
    monkeypatch.setenv("SDP_STAGER_RUNNER_PYTHON", "/usr/bin/python3")
    monkeypatch.setenv("SDP_STAGER_NUM_THREADS", "3")
    monkeypatch.setenv("SDP_STAGER_PARALLEL_THRESHOLD", "1048576")
    seen = {}

    def fake_run_as(spec, stager_user, **kw):
        seen.update(spec=dict(spec), python=kw["python"])
        return {"processed": 0, "skipped": 0, "bytes_done": 0, "total": 0, "failed": 0, "bytes_total": 0}

    monkeypatch.setattr("sensitive_data.operators.stager.run_as", fake_run_as)
    run(StagerTransferOperator(task_id="transfer"), job(str(tmp_path), f"irods:{coll}", connections))
    assert seen["python"] == "/usr/bin/python3"
    assert (seen["spec"]["num_threads"], seen["spec"]["parallel_threshold"]) == (3, 1 << 20)


def test_plaintext_drpass_is_refused_before_any_transfer(tmp_path, connections, coll):
    params = {**job(str(tmp_path), f"irods:{coll}", connections), "drPass": "alice-secret"}
    for op in (StagerValidateJobOperator(task_id="validate"), StagerTransferOperator(task_id="transfer")):
        with pytest.raises(AirflowFailException, match="drPass must be RSA-encrypted") as info:
            run(op, params)
        assert "job refused" in info.value.ti.xcom["error"]
        assert "alice-secret" not in str(info.value)


def test_wrong_credential_fails_without_retry(tmp_path, connections, coll):
    (tmp_path / "f").write_text("x")
    with pytest.raises(AirflowFailException, match="rejected the data-repository credential") as info:
        run(StagerTransferOperator(task_id="transfer"),
            job(str(tmp_path), f"irods:{coll}", connections, "bad"))
    decision = StagerRetryPolicy().evaluate(info.value, try_number=1, max_tries=5)
    assert decision.action == RetryAction.FAIL


def test_transient_errors_back_off_30s_times_attempt():
    policy = StagerRetryPolicy()
    for attempt in (1, 2, 3, 4):
        decision = policy.evaluate(TransientError("network"), try_number=attempt, max_tries=5)
        assert decision.action == RetryAction.RETRY
        assert decision.retry_delay.total_seconds() == 30 * attempt
    op = StagerTransferOperator(task_id="transfer")
    assert op.retries == 4


def test_streamer_builds_an_encrypted_job_into_the_dac_collection(connections):
    params = {"projectId": "3010000.01", "srcPath": "/project/3010000.01/raw/sub-01/ses-mri01",
              "modality": "MRI"}
    doc, ti = run(StagerStreamerJobOperator(task_id="resolve"), params)
    assert doc["dstURL"] == f"irods:/{ZONE}/dccn/DAC_3010000.01/raw/sub-01/ses-mri01"
    assert (doc["timeout"], doc["timeout_noprogress"]) == (10800, 600)
    assert doc["drUser"] == "stager-streamer" and "streamer-secret" not in json.dumps(doc)
    from include.stager.credentials import decrypt_password

    assert decrypt_password(doc["drPass"], connections) == "streamer-secret"
    with pytest.raises(AirflowFailException, match="no DAC collection"):
        run(StagerStreamerJobOperator(task_id="resolve"), {**params, "projectId": "3999999.01"})
