"""The stager's errors on the shared hierarchy: kinds, hints, and the runner's error events."""

from __future__ import annotations

import pickle

import pytest

from include.common import errors as common
from include.stager.errors import (
    Cancelled,
    ConfigurationError,
    StagerError,
    TransferTimeout,
    TransientError,
    UserError,
)
from include.stager.runner import ERROR_KINDS


@pytest.mark.parametrize(("cls", "base", "kind"), [
    (UserError, common.UserError, "user"),
    (TransientError, common.TransientError, "transient"),
    (TransferTimeout, common.TransientError, "transient"),
    (ConfigurationError, common.ConfigError, "config"),
    (Cancelled, common.SensitiveDataError, "error"),
    (StagerError, common.SensitiveDataError, "error"),
])
def test_each_stager_error_is_of_its_shared_kind(cls, base, kind):
    err = cls("something went wrong")
    assert isinstance(err, base) and isinstance(err, StagerError)
    assert common.kind_of(err) == kind
    assert common.is_transient(err) == (kind == "transient")


def test_cancelled_is_neither_a_user_error_nor_transient():
    err = Cancelled("the job was cancelled")
    assert not isinstance(err, (common.UserError, common.TransientError, common.ConfigError))


def test_the_message_says_what_to_do_and_the_reason_stays_bare():
    err = UserError("the source /project/x does not exist")
    assert err.reason == "the source /project/x does not exist"
    assert str(err).startswith(err.reason) and "What to do: correct the job" in str(err)
    assert "What to do" in str(TransientError("network")) and "retried" in str(TransientError("network"))
    custom = UserError("bad", hint="ask the admins")
    assert str(custom) == "bad. What to do: ask the admins"
    assert str(pickle.loads(pickle.dumps(custom))) == str(custom)


@pytest.mark.parametrize("exc", [UserError("u"), ConfigurationError("c"), TransferTimeout("t"), Cancelled("x"),
                                 TransientError("n")])
def test_an_error_event_of_the_child_is_rebuilt_as_the_same_class_with_its_hint(exc):
    """What ``child_main`` emits and ``run_as`` raises: the kind names the class, reason and hint travel apart."""
    kind = next(k for k, cls in ERROR_KINDS.items() if isinstance(exc, cls))
    event = {"event": "error", "kind": kind, "message": exc.reason, "hint": exc.hint}
    rebuilt = ERROR_KINDS[event["kind"]](event["message"], hint=event["hint"])
    assert type(rebuilt) is type(exc) and str(rebuilt) == str(exc)
    assert str(rebuilt).count("What to do") <= 1
