"""The HTTP hook base against a small real HTTP server."""

from __future__ import annotations

import json

import pytest

from include.common.errors import ConfigError, PermissionDenied, TransientError, UserError
from sensitive_data.common.http import SensitiveDataHttpHook


class PipeUserError(UserError):
    pass


class PipeTransient(TransientError):
    pass


class ServiceHook(SensitiveDataHttpHook):
    conn_name_attr = "service_conn_id"
    default_conn_name = "service"
    hook_name = "Test service"
    system = "test service"
    own_extras = frozenset({"audience"})
    bearer_token = True
    user_error = PipeUserError
    transient_error = PipeTransient


def _conn(monkeypatch, port, **extra):
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": port, "password": "s3cret-token",
            "extra": {"audience": "vault", "X-Team": "ega", "timeout": 5, **extra}}
    monkeypatch.setenv("AIRFLOW_CONN_SERVICE", json.dumps(conn))


def test_json_answer_auth_and_headers(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("POST", "/api/thing", (200, {"ok": True}))
    hook = ServiceHook()
    assert hook.request("POST", "/api/thing", "making a thing", json={"a": 1}) == {"ok": True}
    _, _, headers = http_server.seen[-1]
    assert headers["Authorization"] == "Bearer s3cret-token"
    assert headers["X-Team"] == "ega"  # other extras are headers, as HttpHook makes them
    assert "audience" not in {k.lower() for k in headers}  # the hook's own extras are not
    assert hook.extras()["audience"] == "vault"
    assert hook.url == f"http://127.0.0.1:{http_server.port}"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(401, PermissionDenied), (403, PermissionDenied), (400, PipeUserError), (409, PipeUserError),
     (422, PipeUserError), (404, PipeUserError), (500, PipeTransient), (503, PipeTransient),
     (429, PipeTransient), (408, PipeTransient)],
)
def test_status_codes_map_to_error_classes(http_server, monkeypatch, status, cls):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/x", (status, {"error": {"code": "Nope", "message": "because"}}))
    with pytest.raises(cls) as err:
        ServiceHook().request("GET", "/x", "reading x")
    assert err.value.status == status and err.value.code == "Nope"
    assert "test service" in str(err.value) and "reading x" in str(err.value) and "because" in str(err.value)
    assert "s3cret-token" not in str(err.value)


def test_401_is_a_config_error_naming_the_connection(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/x", (401, "no"))
    with pytest.raises(ConfigError, match=r"refused our credentials.*HTTP 401.*'service' connection"):
        ServiceHook().request("GET", "/x", "reading x")


def test_missing_ok_and_empty_and_non_json(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/gone", (404, {"message": "no such thing"}))
    http_server.set("PUT", "/empty", (204, ""))
    http_server.set("GET", "/html", (200, "<html>proxy</html>"))
    hook = ServiceHook()
    assert hook.request("GET", "/gone", "reading", missing_ok=True) is None
    with pytest.raises(PipeUserError, match="no such thing"):
        hook.request("GET", "/gone", "reading")
    assert hook.request("PUT", "/empty", "writing") is None
    with pytest.raises(PipeTransient, match="not JSON"):
        hook.request("GET", "/html", "reading")


def test_connection_refused_is_transient(monkeypatch, closed_port):
    _conn(monkeypatch, closed_port)
    with pytest.raises(PipeTransient, match=r"unreachable while reading x \(ConnectionError\)") as err:
        ServiceHook().request("GET", "/x", "reading x")
    assert err.value.status is None
    assert ServiceHook().test_connection()[0] is False


def test_verify_false_string_and_given_connection(http_server, monkeypatch):
    from airflow.sdk import Connection

    conn = Connection(conn_id="service", conn_type="http", host="127.0.0.1", port=http_server.port,
                      extra=json.dumps({"verify": "false"}))
    http_server.set("GET", "/", (200, {"up": 1}))
    hook = ServiceHook(connection=conn)  # no AIRFLOW_CONN_SERVICE: the given connection is used
    assert hook.request("GET", "/", "checking") == {"up": 1}
    assert hook.get_conn().verify is False
    assert hook.test_connection() == (True, "test service answered HTTP 200")


def test_httphook_run_uses_the_same_mapping(http_server, monkeypatch):
    _conn(monkeypatch, http_server.port)
    http_server.set("GET", "/x", (403, "forbidden"))
    with pytest.raises(PermissionDenied):
        ServiceHook().run("/x")
