"""The stager operators on the shared translation, with the stager's job-status channel."""

from __future__ import annotations

import logging

import pytest
from airflow.sdk.exceptions import AirflowFailException

from include.stager.errors import Cancelled, ConfigurationError, TransientError, UserError
from sensitive_data.common.errors import SensitiveDataOperatorMixin, TransientFailure
from sensitive_data.operators.stager import (
    StagerStreamerJobOperator,
    StagerTransferOperator,
    StagerValidateJobOperator,
    job_status,
    progress_to_status,
)


class TI:
    def __init__(self):
        self.xcom: dict = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value


def _in_job_status(exc, what=""):
    ti = TI()
    with pytest.raises(BaseException) as info, job_status({"ti": ti}, what):
        raise exc
    return info.value, ti.xcom


def test_a_user_error_goes_to_the_job_status_and_fails_without_retry():
    raised, xcom = _in_job_status(UserError("the source /project/x does not exist"), "job refused")
    assert type(raised) is AirflowFailException
    assert str(raised).startswith("job refused: the source /project/x does not exist")
    assert xcom["error"] == str(raised)


def test_a_deployment_error_fails_without_retry_and_is_reported():
    raised, xcom = _in_job_status(ConfigurationError("the runner interpreter cannot start"))
    assert type(raised) is AirflowFailException and "runner interpreter" in xcom["error"]


def test_a_transient_error_is_reported_and_retried():
    raised, xcom = _in_job_status(TransientError("connection reset"))
    assert isinstance(raised, TransientFailure) and "connection reset" in str(raised)
    assert xcom["error"].startswith("connection reset")


def test_a_cancel_is_reported_and_not_turned_into_a_failure_of_the_job():
    raised, xcom = _in_job_status(Cancelled("the job was cancelled"))
    assert type(raised) is Cancelled and xcom["error"].startswith("the job was cancelled")


def test_a_bug_is_neither_translated_nor_reported_as_the_jobs_error():
    raised, xcom = _in_job_status(KeyError("spec"))
    assert type(raised) is KeyError and xcom == {}


def test_progress_reports_reach_the_log_and_the_job_status(caplog):
    ti = TI()
    on_progress = progress_to_status(ti, logging.getLogger("stager-test"), started=0.0)
    with caplog.at_level(logging.INFO, logger="stager-test"):
        on_progress({"total": 5, "processed": 2, "failed": 1, "skipped": 0, "bytes_total": 50, "bytes_done": 20})
    assert ti.xcom["progress"]["total"] == 5 and ti.xcom["progress"]["processed"] == 2
    assert ti.xcom["progress"]["elapsed"] > 0
    assert "progress: total=5 processed=2 failed=1 bytes=20/50" in caplog.text


@pytest.mark.parametrize("cls", [StagerValidateJobOperator, StagerTransferOperator, StagerStreamerJobOperator])
def test_every_stager_operator_translates_on_the_shared_mixin(cls):
    assert issubclass(cls, SensitiveDataOperatorMixin)
    assert cls.__mro__.index(SensitiveDataOperatorMixin) < [c.__name__ for c in cls.__mro__].index("BaseOperator")


def test_operators_build_no_hook_and_set_no_retry_of_their_own():
    op = StagerTransferOperator(task_id="transfer")
    assert op.irods_conn_id == "irods" and op._proc is None
    assert op.retry_policy is None  # retries come from the DAG's RETRIES_TRANSFER
