"""Operator and trigger logic that needs no service: error translation, consent messages, serialisation."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.cleanroom.errors import (
    CleanroomConfigError,
    CleanroomError,
    CleanroomRefused,
    CleanroomTransientError,
    CleanroomUserError,
)
from include.cleanroom.governance import disabled_by
from sensitive_data.common.errors import TransientFailure, translate_errors
from sensitive_data.operators import cleanroom_governance as ops
from sensitive_data.operators import cleanroom_spark as spark_ops
from sensitive_data.triggers.cleanroom import GovernanceAcceptanceTrigger, SparkApplicationTrigger


@pytest.mark.parametrize(
    "error,expected",
    [
        (CleanroomUserError("bad"), AirflowFailException),
        (CleanroomRefused("no"), AirflowFailException),
        (CleanroomConfigError("conf"), AirflowFailException),
        (CleanroomTransientError("down"), TransientFailure),
    ],
)
def test_the_clean_room_errors_are_translated_by_the_shared_core(error, expected):
    with pytest.raises(expected) as err:
        with translate_errors():
            raise error
    assert str(error) in str(err.value) and err.value.__cause__ is None
    if expected is not AirflowFailException:
        assert not isinstance(err.value, AirflowFailException)


def test_an_unclassified_clean_room_error_fails_loudly_as_a_bug():
    with pytest.raises(CleanroomError, match="other"):
        with translate_errors():
            raise CleanroomError("other")


def test_disabled_by_names_the_members():
    msg = {"code": "ContractDisabled", "message": "Contract has been disabled by the following member(s): m[b,c]."}
    assert disabled_by(msg) == "b, c"
    assert disabled_by({"code": "ContractNotAccepted", "message": ""}) == "ContractNotAccepted"


@pytest.mark.parametrize(
    "trigger",
    [
        SparkApplicationTrigger("cr-q1-abc", "cleanroom", "k8s", 2.0),
        GovernanceAcceptanceTrigger("document", "q1", "gov", 3.0),
    ],
)
def test_triggers_serialize_their_arguments(trigger):
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert cls(**kwargs).serialize() == (path, kwargs)


class FakeGovernance:
    """What governance answers about a proposal (no service: the operator logic alone)."""

    def __init__(self, seen=None, error=None):
        self.seen, self.error = seen, error

    def acceptance(self, kind, target_id):
        if self.error:
            raise self.error
        return self.seen


PENDING = {
    "state": "Proposed",
    "proposalId": "p1",
    "proposalState": "Open",
    "requiredVoters": ["a", "b", "c"],
    "votes": [{"memberId": "a", "vote": True}],
}
TIMED_OUT = {"error": "Trigger timeout"}


def test_await_operator_defers_with_its_deadline_and_names_who_has_not_voted(monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    op = ops.CleanroomAwaitAcceptanceOperator(
        task_id="a", kind="contract", target_id="c1", acceptance_timeout_minutes=60
    )
    monkeypatch.setattr(ops, "governance", lambda conn_id: FakeGovernance(PENDING))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    assert deferred.value.timeout.total_seconds() == 3600
    assert deferred.value.trigger.serialize()[1] == {
        "kind": "contract", "target_id": "c1", "cleanroom_governance_conn_id": "cleanroom_governance",
        "poll_interval": 5.0,
    }
    with pytest.raises(AirflowFailException, match=r"within 1.0 h: b, c have not voted.*deadline"):
        op.resume_execution("__fail__", TIMED_OUT, {})
    monkeypatch.setattr(ops, "governance", lambda conn_id: FakeGovernance(error=CleanroomTransientError("down")))
    with pytest.raises(AirflowFailException, match=r"within 1.0 h \(the votes could not be read: down\)"):
        op.resume_execution("__fail__", TIMED_OUT, {})


def test_await_operator_reports_the_outcome_of_the_wait():
    op = ops.CleanroomAwaitAcceptanceOperator(
        task_id="a", kind="contract", target_id="c1", acceptance_timeout_minutes=60
    )
    with pytest.raises(AirflowFailException, match="rejected by c"):
        op.execute_complete(
            {},
            {**PENDING, "status": "resolved", "proposalState": "Rejected", "votes": [{"memberId": "c", "vote": False}]},
        )
    assert op.execute_complete({}, {"status": "resolved", "state": "Accepted"})["state"] == "Accepted"
    credentials = {"status": "error", "kind": "config", "error": "CleanroomPermissionDenied",
                   "message": "waiting for the votes on contract c1: governance refused our credentials"}
    with pytest.raises(AirflowFailException, match="refused our credentials"):
        op.resume_execution("execute_complete", {"event": credentials}, {})


def test_spark_run_deletes_its_application_at_the_deadline(monkeypatch):
    class FakeK8s:
        cleanroom_namespace = "cleanroom"
        deleted: list = []

        def delete_application(self, name, namespace):
            self.deleted.append((name, namespace))
            return True

    k8s = FakeK8s()
    monkeypatch.setattr(spark_ops, "spark", lambda conn_id: k8s)
    op = spark_ops.CleanroomSparkRunOperator(
        task_id="run", contract_id="c1", document_id="q1", runnable={}, run_timeout_minutes=5
    )

    class Run:
        run_id = "manual__1"

    from include.cleanroom.names import application_name

    with pytest.raises(AirflowFailException, match="q1 did not finish within 5 minutes; it was deleted"):
        op.resume_execution("__fail__", TIMED_OUT, {"dag_run": Run()})
    assert k8s.deleted == [(application_name("q1", "manual__1"), "cleanroom")]
    with pytest.raises(AirflowException, match="disappeared"):
        op.resume_execution("execute_complete", {"event": {"status": "missing", "name": "x"}}, {})
    assert len(k8s.deleted) == 1
