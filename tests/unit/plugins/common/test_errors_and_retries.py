"""The translation of errors into Airflow behaviour, and the retry settings and policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk import BaseOperator
from airflow.sdk.definitions.retry_policy import RetryAction
from airflow.sdk.exceptions import AirflowFailException, TaskDeferralTimeout

from include.common.errors import ConfigError, PermissionDenied, TransientError, UserError
from sensitive_data.common.errors import SensitiveDataOperatorMixin, TransientFailure, translate_errors
from sensitive_data.common.retries import (
    RETRIES_IO,
    RETRIES_NONE,
    RETRIES_SERVICE,
    ErrorRetryPolicy,
    configured_first_delay,
    default_args,
)


@pytest.mark.parametrize("exc", [UserError("bad input"), ConfigError("bad setting"), PermissionDenied("HTTP 401")])
def test_user_and_config_errors_fail_without_retry(exc):
    with pytest.raises(AirflowFailException) as err, translate_errors("file 7"):
        raise exc
    assert str(err.value).startswith(f"file 7: {exc.reason}") and "What to do" in str(err.value)
    assert err.value.__cause__ is None


def test_transient_errors_are_retried():
    with pytest.raises(TransientFailure, match="transient error, will retry: broker down"), translate_errors():
        raise TransientError("broker down")


def test_bugs_pass_unchanged():
    with pytest.raises(KeyError), translate_errors():
        raise KeyError("x")


def test_decorator_form():
    @translate_errors()
    def work():
        raise UserError("no")

    with pytest.raises(AirflowFailException):
        work()


class Waiting(SensitiveDataOperatorMixin, BaseOperator):
    def deadline_message(self):
        return "no answer from the service for file 7"

    def execute_complete(self, context, event):
        self.raise_for_event(event)
        if event.get("boom"):
            raise UserError("the answer says the file is bad")
        return event


def test_deadline_of_defer_fails_with_a_clear_message():
    op = Waiting(task_id="w")
    with pytest.raises(AirflowFailException, match="no answer from the service for file 7 .deadline"):
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, {})
    with pytest.raises(TaskDeferralTimeout):  # what Airflow raises without the mixin
        BaseOperator(task_id="b").resume_execution("__fail__", {"error": "Trigger timeout"}, {})


def test_resume_translates_and_reads_error_events():
    op = Waiting(task_id="w")
    assert op.resume_execution("execute_complete", {"event": {"status": "done"}}, {}) == {"status": "done"}
    with pytest.raises(AirflowFailException, match="file is bad"):
        op.resume_execution("execute_complete", {"event": {"status": "done", "boom": True}}, {})
    with pytest.raises(AirflowFailException, match="refused our credentials"):
        op.resume_execution("execute_complete", {"event": {"status": "error", "kind": "config",
                                                           "message": "refused our credentials"}}, {})
    with pytest.raises(Exception, match="KeyError") as err:
        op.resume_execution("execute_complete", {"event": {"status": "error", "kind": "bug", "message": "KeyError"}},
                            {})
    assert not isinstance(err.value, AirflowFailException)


def test_settings_and_default_args():
    args = default_args(RETRIES_IO, owner="ega")
    assert args["owner"] == "ega" and args["retries"] == 3
    assert args["retry_exponential_backoff"] == 2.0  # a multiplier in Airflow 3, not True
    assert isinstance(args["retry_policy"], ErrorRetryPolicy)
    assert default_args(RETRIES_NONE, owner="platform")["retries"] == 0
    assert [RETRIES_SERVICE.delay(n).total_seconds() for n in (1, 2, 3, 9)] == [15, 30, 60, 600]
    op = BaseOperator(task_id="t", **RETRIES_IO.task_args())
    assert op.retries == 3 and op.retry_policy is not None


def test_policy_fails_user_errors_and_retries_the_rest(monkeypatch):
    monkeypatch.delenv("AIRFLOW__SENSITIVE_DATA__RETRY_DELAY_SECONDS", raising=False)
    policy = ErrorRetryPolicy(RETRIES_IO)
    assert policy.evaluate(UserError("x"), 1, 4).action == RetryAction.FAIL
    wrapped = RuntimeError("wrapper")
    wrapped.__cause__ = PermissionDenied("401")
    assert policy.evaluate(wrapped, 1, 4).action == RetryAction.FAIL
    decision = policy.evaluate(TransientFailure("down"), 2, 4)
    assert decision.action == RetryAction.RETRY and decision.retry_delay == timedelta(seconds=60)
    assert "transient" in decision.reason
    bug = policy.evaluate(KeyError("x"), 1, 4)
    assert bug.action == RetryAction.RETRY and "unexpected KeyError" in bug.reason
    # an error raised while a user error was being reported is its own (here: worth a retry)
    try:
        try:
            raise UserError("bad file")
        except UserError:
            raise TransientError("could not report it") from None
    except TransientError as exc:
        assert policy.evaluate(exc, 1, 4).action == RetryAction.RETRY


def test_first_delay_comes_from_airflow_configuration_at_run_time(monkeypatch):
    policy = ErrorRetryPolicy(RETRIES_IO)
    monkeypatch.setenv("AIRFLOW__SENSITIVE_DATA__RETRY_DELAY_SECONDS", "5")
    assert configured_first_delay() == timedelta(seconds=5)
    assert policy.evaluate(TransientError("x"), 3, 4).retry_delay == timedelta(seconds=20)
    monkeypatch.setenv("AIRFLOW__SENSITIVE_DATA__RETRY_DELAY_SECONDS", "soon")
    decision = policy.evaluate(TransientError("x"), 1, 4)
    assert decision.action == RetryAction.FAIL and "is not a number" in decision.reason
    monkeypatch.setenv("AIRFLOW__SENSITIVE_DATA__RETRY_DELAY_SECONDS", "")
    assert configured_first_delay() is None
