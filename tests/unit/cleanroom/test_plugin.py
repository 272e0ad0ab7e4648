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
from sensitive_data.operators import cleanroom_base as base
from sensitive_data.operators import cleanroom_governance as ops
from sensitive_data.triggers.cleanroom import GovernanceAcceptanceTrigger, SparkApplicationTrigger


@pytest.mark.parametrize(
    "error,expected",
    [
        (CleanroomUserError("bad"), AirflowFailException),
        (CleanroomRefused("no"), AirflowFailException),
        (CleanroomConfigError("conf"), AirflowFailException),
        (CleanroomTransientError("down"), base.CleanroomTransientFailure),
        (CleanroomError("other"), AirflowException),
    ],
)
def test_error_translation(error, expected):
    with pytest.raises(expected) as err:
        with base.cleanroom_errors():
            raise error
    assert str(err.value) == str(error) and err.value.__cause__ is None
    if expected is not AirflowFailException:
        assert not isinstance(err.value, AirflowFailException)


def test_disabled_by_names_the_members():
    msg = {"code": "ContractDisabled", "message": "Contract has been disabled by the following member(s): m[b,c]."}
    assert disabled_by(msg) == "b, c"
    assert disabled_by({"code": "ContractNotAccepted", "message": ""}) == "ContractNotAccepted"


@pytest.mark.parametrize(
    "trigger",
    [
        SparkApplicationTrigger("cr-q1-abc", "cleanroom", "k8s", 2.0, 123.0),
        GovernanceAcceptanceTrigger("document", "q1", "gov", 3.0, None),
    ],
)
def test_triggers_serialize_their_arguments(trigger):
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert cls(**kwargs).serialize() == (path, kwargs)


def test_await_operator_reports_who_has_not_voted():
    op = ops.CleanroomAwaitAcceptanceOperator(
        task_id="a", kind="contract", target_id="c1", acceptance_timeout_minutes=60
    )
    event = {
        "status": "timeout",
        "state": "Proposed",
        "proposalId": "p1",
        "proposalState": "Open",
        "requiredVoters": ["a", "b", "c"],
        "votes": [{"memberId": "a", "vote": True}],
    }
    with pytest.raises(AirflowFailException, match=r"within 1.0 h: b, c have not voted"):
        op.execute_complete({}, event)
    with pytest.raises(AirflowFailException, match="rejected by c"):
        op.execute_complete(
            {},
            {**event, "status": "resolved", "proposalState": "Rejected", "votes": [{"memberId": "c", "vote": False}]},
        )
    assert op.execute_complete({}, {"status": "resolved", "state": "Accepted"})["state"] == "Accepted"
