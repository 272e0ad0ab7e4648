"""The hpcs hooks without outside services: a tiny HTTP server, a fake agent process, hvac mocked."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from include.hpcs.errors import HpcsConfigError, HpcsError, HpcsTransientError, HpcsUserError
from include.hpcs.scratch import RunScratch


@pytest.fixture
def http_server():
    replies: dict[str, tuple[int, object]] = {}
    seen: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            path = self.path.split("?")[0]
            seen.append((path, body))
            status, reply = replies.get(path, (404, {"message": "no"}))
            data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], replies, seen
    srv.shutdown()


@pytest.fixture
def hpcs_hook(http_server, monkeypatch):
    from sensitive_data.hooks.hpcs_server import HpcsServerHook

    port, replies, seen = http_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_HPCS_SERVER",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": port, "extra": {"svid_audience": "TESTING"}}),
    )
    return HpcsServerHook(), replies, seen


def test_register_client(hpcs_hook):
    hook, replies, _ = hpcs_hook
    replies["/api/client/register"] = (
        200,
        {
            "success": True,
            "message": "ok",
            "client_id": "abc123def",
            "spiffeID": "spiffe://td/c/abc123def",
            "token": "join-secret",
        },
    )
    reg = hook.register_client()
    assert reg.client_id == "abc123def" and reg.token == "join-secret"
    assert "join-secret" not in repr(reg)
    assert hook.svid_audience == "TESTING"


def test_register_failure_never_shows_token(hpcs_hook):
    hook, replies, _ = hpcs_hook
    replies["/api/client/register"] = (
        200,
        {"success": False, "message": "An error occured", "token": "leak-me"},
    )
    with pytest.raises(HpcsError) as err:
        hook.register_client()
    assert "leak-me" not in str(err.value) and "An error occured" in str(err.value)


@pytest.mark.parametrize(
    "status,error",
    [
        (503, HpcsTransientError),
        (500, HpcsTransientError),
        (429, HpcsTransientError),
        (400, HpcsUserError),
        (401, HpcsConfigError),
        (403, HpcsConfigError),
        (404, HpcsConfigError),
        (405, HpcsConfigError),
    ],
)
def test_http_errors(hpcs_hook, status, error):
    from include.common.errors import ConfigError, TransientError, UserError

    hook, replies, _ = hpcs_hook
    replies["/api/client/create-workloads"] = (status, {"success": False, "message": "invalid user 'X'"})
    with pytest.raises(error) as err:
        hook.create_workloads(jwt="the-jwt", secret="s", users=["a"], groups=[], compute_nodes=["cn01"])
    # the common classes, so that translate_errors and the retry policy know them
    common = {HpcsTransientError: TransientError, HpcsUserError: UserError, HpcsConfigError: ConfigError}[error]
    assert isinstance(err.value, common) and err.value.status == status
    assert "HPCS server" in str(err.value) and "the-jwt" not in str(err.value)
    if status == 400:
        assert "invalid user 'X'" in str(err.value)  # the server's message says what to fix


@pytest.mark.parametrize("reply", [{"success": "false", "message": "Error while creating agent's token"}, [1, 2]])
def test_answer_without_success_is_an_error(hpcs_hook, reply):
    hook, replies, _ = hpcs_hook
    replies["/api/client/register"] = (200, reply)
    with pytest.raises(HpcsError) as err:
        hook.register_client()
    assert not isinstance(err.value, (HpcsUserError, HpcsTransientError, HpcsConfigError))


def test_own_extras_are_not_headers(hpcs_hook):
    hook, replies, _ = hpcs_hook
    session = hook.get_conn()
    assert "svid_audience" not in {k.lower() for k in session.headers}
    assert hook.url.startswith("http://127.0.0.1:")


def test_server_down(monkeypatch):
    from devstack.procs import free_port
    from sensitive_data.hooks.hpcs_server import HpcsServerHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_HPCS_SERVER",
        json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": free_port()}),
    )
    with pytest.raises(HpcsTransientError, match="unreachable"):
        HpcsServerHook().register_client()


def test_create_workloads_payload(hpcs_hook):
    hook, replies, seen = hpcs_hook
    replies["/api/client/create-workloads"] = (
        200,
        {
            "success": True,
            "message": "ok",
            "clientID": "c",
            "spiffeID": "spiffe://td/c/c/s/ds",
            "compute_nodes_added": {"cn01": {"users": ["alice"], "groups": []}},
            "secrets_path": "client_c/ds",
            "user_role": "client_c-ds",
        },
    )
    answer = hook.create_workloads(jwt="the-jwt", secret="ds", users=["alice"], groups=[], compute_nodes=["cn01"])
    assert seen[-1] == (
        "/api/client/create-workloads",
        {"jwt": "the-jwt", "secret": "ds", "users": ["alice"], "groups": None, "compute_nodes": ["cn01"]},
    )
    assert answer["user_role"] == "client_c-ds"


# ----- Vault ---------------------------------------------------------------------------------


@pytest.fixture
def vault_hook(monkeypatch):
    from sensitive_data.hooks.hpcs_vault import HpcsVaultHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_VAULT",
        json.dumps(
            {
                "conn_type": "vault",
                "host": "127.0.0.1",
                "port": 1,
                "extra": {"kv_mount": "kv", "jwt_mount": "jwt"},
            }
        ),
    )
    return HpcsVaultHook()


def test_vault_down_is_transient(vault_hook):
    with pytest.raises(HpcsTransientError, match="unavailable"):
        vault_hook.login_jwt("client_x", "a.b.c")


@pytest.mark.parametrize(
    "exc_name,error",
    [
        ("Forbidden", HpcsConfigError),
        ("InvalidRequest", HpcsConfigError),
        ("VaultDown", HpcsTransientError),
        ("InternalServerError", HpcsTransientError),
    ],
)
def test_vault_error_mapping(vault_hook, monkeypatch, exc_name, error):
    from hvac import exceptions

    client = vault_hook.get_conn()

    def boom(**kw):
        raise getattr(exceptions, exc_name)("message with jwt=" + kw.get("jwt", ""))

    monkeypatch.setattr(client.auth.jwt, "jwt_login", boom)
    with pytest.raises(error) as err:
        vault_hook.login_jwt("client_x", "SECRET-JWT")
    assert "SECRET-JWT" not in str(err.value)
    assert err.value.__cause__ is None


def test_vault_write_returns_version(vault_hook, monkeypatch):
    client = vault_hook.get_conn()
    calls = []
    monkeypatch.setattr(
        client.secrets.kv.v2,
        "create_or_update_secret",
        lambda **kw: calls.append(kw) or {"data": {"version": 3}},
    )
    assert vault_hook.write_secret("client_x/ds", {"key": "k"}) == 3
    assert calls == [{"path": "client_x/ds", "secret": {"key": "k"}, "mount_point": "kv"}]


# ----- SPIRE agent process -------------------------------------------------------------------

FAKE_AGENT = textwrap.dedent("""
    import os, signal, socket, sys, time
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    conf = open(args["-config"]).read()
    print("join token in config" if "join_token" in conf else "no join token", flush=True)
    sock = [l.split("=", 1)[1].strip().strip('"') for l in conf.splitlines() if "socket_path" in l][0]
    if os.environ.get("FAKE_AGENT_STUBBORN"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("FAKE_AGENT_FAIL"):
        print("cannot attest: bad join token", flush=True)
        sys.exit(1)
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    s.listen(5)
    print("agent up", flush=True)
    while True:
        time.sleep(1)
""")


@pytest.fixture
def agent_hook(tmp_path, monkeypatch):
    from sensitive_data.hooks.hpcs_spire import SpireAgentHook

    script = tmp_path / "fake_agent.py"
    script.write_text(FAKE_AGENT)
    monkeypatch.setenv(
        "AIRFLOW_CONN_SPIRE_AGENT",
        json.dumps(
            {
                "conn_type": "generic",
                "host": "127.0.0.1",
                "port": 8081,
                "extra": {
                    "trust_domain": "hpcs.test",
                    "command": f"{{python}} {script} -config {{config}}",
                    "ready_timeout": 10,
                },
            }
        ),
    )
    return SpireAgentHook()


def test_agent_start_ready_stop(agent_hook, tmp_path):
    scratch = RunScratch(tmp_path / "s", "dag", "run").ensure()
    pid = agent_hook.start(scratch, "tok-123")
    agent_hook.wait_ready(scratch)
    assert os.getpgid(pid) == pid  # its own process group
    conf = scratch.agent_config_path.read_text()
    # the agent read the token from its 0600 config (not argv); once attested it is gone from disk too
    assert "tok-123" not in conf and 'trust_domain = "hpcs.test"' in conf
    assert "join token in config" in scratch.agent_log_path.read_text()
    assert "tok-123" not in " ".join(open(f"/proc/{pid}/cmdline").read().split("\0"))
    assert oct(os.stat(scratch.agent_config_path).st_mode & 0o777) == "0o600"
    assert agent_hook.stop(scratch) is True
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert agent_hook.stop(scratch) is False


def test_agent_killed_when_it_ignores_sigterm(agent_hook, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_STUBBORN", "1")
    scratch = RunScratch(tmp_path / "s", "dag", "run").ensure()
    pid = agent_hook.start(scratch, "tok")
    agent_hook.wait_ready(scratch)
    t0 = time.monotonic()
    assert agent_hook.stop(scratch, grace=1.0)
    assert time.monotonic() - t0 < 5
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_agent_that_dies_is_reported(agent_hook, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_AGENT_FAIL", "1")
    scratch = RunScratch(tmp_path / "s", "dag", "run").ensure()
    agent_hook.start(scratch, "tok")
    with pytest.raises(HpcsTransientError, match="exited before opening"):
        agent_hook.wait_ready(scratch)


def test_fetch_svid_without_agent_times_out(tmp_path):
    from sensitive_data.hooks.hpcs_spire import SpireAgentHook

    with pytest.raises(HpcsTransientError, match="no JWT-SVID"):
        SpireAgentHook.fetch_jwt_svid(tmp_path / "none.sock", "vault", timeout=1)


def test_missing_agent_binary(tmp_path, monkeypatch):
    from sensitive_data.hooks.hpcs_spire import SpireAgentHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_SPIRE_AGENT",
        json.dumps(
            {
                "conn_type": "generic",
                "host": "h",
                "port": 1,
                "extra": {"trust_domain": "td", "command": "/nonexistent/spire-agent run -config {config}"},
            }
        ),
    )
    scratch = RunScratch(tmp_path / "s", "dag", "run").ensure()
    with pytest.raises(HpcsError, match="cannot start the SPIRE agent"):
        SpireAgentHook().start(scratch, "tok")


def test_signal_module_sane():
    assert signal.SIGKILL and sys.executable
