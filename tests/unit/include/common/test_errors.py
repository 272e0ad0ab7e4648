from __future__ import annotations

import pickle

import pytest

from include.common.errors import (
    ConfigError,
    PermissionDenied,
    SensitiveDataError,
    TransientError,
    UserError,
    is_transient,
    kind_of,
)


class PipeError(SensitiveDataError):
    pass


class PipeUserError(PipeError, UserError):
    pass


class PipeTransient(PipeError, TransientError):
    default_hint = "wait for the service"


def test_message_carries_the_hint_and_reason_stays_bare():
    err = UserError("checksum mismatch")
    assert err.reason == "checksum mismatch"
    assert str(err) == "checksum mismatch. What to do: correct the input and submit the work again"
    assert str(UserError("bad", hint="upload it again")) == "bad. What to do: upload it again"
    assert str(UserError("bad", hint="")) == "bad"


def test_each_kind_has_a_hint():
    for cls in (UserError, ConfigError, PermissionDenied, TransientError):
        assert cls("x").hint, cls


def test_pipeline_subclasses_are_caught_by_both_names():
    with pytest.raises(UserError):
        raise PipeUserError("x")
    with pytest.raises(PipeError):
        raise PipeTransient("y")
    assert kind_of(PipeUserError("x")) == "user"
    assert kind_of(PipeTransient("x")) == "transient"
    assert kind_of(PermissionDenied("x")) == "config"
    assert kind_of(ValueError("x")) == "bug"
    assert kind_of(PipeError("x")) == "error"
    assert str(PipeTransient("down")).endswith("What to do: wait for the service")


def test_transient_classification():
    assert is_transient(TransientError("x"))
    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert is_transient(TimeoutError())
    assert not is_transient(UserError("x"))
    assert not is_transient(PermissionDenied("401"))
    assert not is_transient(PermissionError("denied"))  # a local permission: not worth waiting for
    assert not is_transient(KeyError("x"))


def test_pickles_with_hint_and_attributes():
    err = PipeUserError("bad", hint="fix it")
    err.file_id = "f1"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is PipeUserError and back.reason == "bad" and back.hint == "fix it" and back.file_id == "f1"
