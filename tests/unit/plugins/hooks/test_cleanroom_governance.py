"""The governance hook on the shared HTTP base, against a small real HTTP server: the member token
as bearer, ``runtime_url`` kept out of the headers, statuses mapped to the clean room's errors."""

from __future__ import annotations

import json

import pytest

from include.cleanroom.errors import (
    CleanroomConfigError,
    CleanroomPermissionDenied,
    CleanroomTransientError,
    CleanroomUserError,
)
from include.common.errors import PermissionDenied, TransientError, UserError
from sensitive_data.hooks.cleanroom_governance import CleanroomGovernanceHook, GovernanceError

TOKEN = "member-token-1234"


def _conn(monkeypatch, port, **extra):
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "schema": "http", "password": TOKEN,
            "extra": {"timeout": 5, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_CR_GOV_UNIT", json.dumps(conn))
    return CleanroomGovernanceHook("cr_gov_unit")


def test_member_token_as_bearer_and_runtime_url_is_not_a_header(http_server, monkeypatch):
    hook = _conn(monkeypatch, http_server.port, runtime_url="http://cgs.cluster.local:9290/")
    http_server.set("GET", "/show", (200, {"memberId": "analyst"}))
    assert hook.member_id() == "analyst"
    _, _, headers = http_server.seen[-1]
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert not any(k.lower() == "runtime_url" for k in headers)
    assert hook.runtime_url == "http://cgs.cluster.local:9290"
    assert _conn(monkeypatch, http_server.port).runtime_url == f"http://127.0.0.1:{http_server.port}"
    assert hook.test_connection() == (True, f"governance member analyst at http://127.0.0.1:{http_server.port}")


@pytest.mark.parametrize(
    "status,cls,common",
    [
        (401, CleanroomPermissionDenied, PermissionDenied),
        (403, CleanroomPermissionDenied, PermissionDenied),
        (409, GovernanceError, UserError),
        (404, GovernanceError, UserError),
        (503, CleanroomTransientError, TransientError),
        (429, CleanroomTransientError, TransientError),
    ],
)
def test_statuses_become_the_clean_rooms_errors(http_server, monkeypatch, status, cls, common):
    hook = _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/proposals/p1", (status, {"error": {"code": "Nope", "message": "not now"}}))
    with pytest.raises(cls) as err:
        hook.get_proposal("p1")
    assert isinstance(err.value, common) and err.value.status == status and err.value.code == "Nope"
    assert "reading proposal p1" in str(err.value) and TOKEN not in str(err.value)
    if status in (401, 403):
        assert isinstance(err.value, CleanroomConfigError) and "'cr_gov_unit' connection" in str(err.value)
    if cls is GovernanceError:
        assert isinstance(err.value, CleanroomUserError) and "not now" in str(err.value)


def test_missing_is_none_where_the_call_allows_it_and_refused_is_transient(http_server, monkeypatch, closed_port):
    hook = _conn(monkeypatch, http_server.port)
    assert hook.get_contract("c1") is None  # nothing answers that path: 404
    assert hook.acceptance("contract", "c1") == {"state": "Missing", "proposalId": ""}
    with pytest.raises(CleanroomTransientError, match="unreachable while reading contract c1"):
        _conn(monkeypatch, closed_port).get_contract("c1")


def test_secret_values_are_masked_and_never_in_errors(http_server, monkeypatch):
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    hook = _conn(monkeypatch, http_server.port)
    http_server.set("PUT", "/contracts/c1/secrets/visits-dek", (500, {"error": {"code": "Down", "message": "x"}}))
    with pytest.raises(CleanroomTransientError) as err:
        hook.put_secret("c1", "visits-dek", "very-secret-key-value")
    assert "very-secret-key-value" not in str(err.value)
    masked = _secrets_masker().redact("very-secret-key-value and " + TOKEN)
    assert "very-secret-key-value" not in masked and TOKEN not in masked
