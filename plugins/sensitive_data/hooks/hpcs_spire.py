"""Hook for a SPIRE agent started for one run (connection ``spire_agent``) and its Workload API."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from include.hpcs.agent_config import AgentConfig, render_command
from include.hpcs.errors import HpcsError, HpcsTransientError
from include.hpcs.scratch import RunScratch, write_private_file

DEFAULT_COMMAND = "spire-agent run -config {config}"


@dataclass(frozen=True)
class JwtSvid:
    """A JWT-SVID. ``repr`` never shows the token."""

    token: str = field(repr=False)
    spiffe_id: str
    expiry: int


def _socket_ready(path: Path) -> bool:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # our own child that has exited: reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


class SpireAgentHook(BaseHook):
    """Start and stop a SPIRE agent for one run and fetch JWT-SVIDs from its Workload API.

    The connection's ``host``/``port`` are the SPIRE server's (or the ``server_address`` and
    ``server_port`` extras). Extras:
    ``trust_domain`` (required); ``command``: the agent command template with ``{config}``,
    ``{socket}``, ``{data_dir}``, ``{log}`` and ``{python}`` placeholders (default
    ``spire-agent run -config {config}``; in development
    ``{python} -m devstack.spire agent run -config {config}``); the join token is written into the
    0600 config, never on the command line (a template with ``{token}`` is refused); ``cwd`` and ``env``
    for that command; ``trust_bundle_path`` (else insecure bootstrap as HPCS does); ``log_level``;
    ``ready_timeout`` (seconds to wait for the Workload API socket, default 60).

    The agent runs in a session (process group) of its own, so that it outlives the setup task and
    is stopped as a whole by the teardown: SIGTERM to the group, SIGKILL after a grace period.

    :param spire_agent_conn_id: the SPIRE agent connection
    """

    conn_name_attr = "spire_agent_conn_id"
    default_conn_name = "spire_agent"
    conn_type = "generic"
    hook_name = "SPIRE agent"

    def __init__(self, spire_agent_conn_id: str = default_conn_name, **kwargs):
        super().__init__(**kwargs)
        self.spire_agent_conn_id = spire_agent_conn_id
        self._extra: dict | None = None
        self._server: tuple[str, int] | None = None

    def _load(self) -> dict:
        if self._extra is None:
            conn = self.get_connection(self.spire_agent_conn_id)
            self._extra = dict(conn.extra_dejson)
            self._server = (conn.host or "127.0.0.1", int(conn.port or 8081))
            if not self._extra.get("trust_domain"):
                raise HpcsError(f"connection '{self.spire_agent_conn_id}' lacks the 'trust_domain' extra")
        return self._extra

    def get_conn(self) -> dict:
        return self._load()

    @property
    def trust_domain(self) -> str:
        return str(self._load()["trust_domain"])

    def agent_config(self, scratch: RunScratch, join_token: str | None = None) -> AgentConfig:
        extra = self._load()
        assert self._server is not None
        return AgentConfig(
            trust_domain=self.trust_domain,
            server_address=str(extra.get("server_address") or self._server[0]),
            server_port=int(extra.get("server_port") or self._server[1]),
            socket_path=str(scratch.socket_path),
            data_dir=str(scratch.agent_data_dir),
            log_level=str(extra.get("log_level", "INFO")),
            trust_bundle_path=extra.get("trust_bundle_path"),
            join_token=join_token,
        )

    def start(self, scratch: RunScratch, join_token: str) -> int:
        """Write the agent's configuration and start it; returns its pid (also in the pid file)."""
        extra = self._load()
        if scratch.agent_pid_path.exists():
            self.stop(scratch)
        scratch.ensure_agent_dir()
        scratch.socket_path.unlink(missing_ok=True)
        mask_secret(join_token)
        argv = render_command(  # refuses a command line with the token before anything is written
            str(extra.get("command") or DEFAULT_COMMAND),
            config=str(scratch.agent_config_path),
            socket=str(scratch.socket_path),
            data_dir=str(scratch.agent_data_dir),
            log=str(scratch.agent_log_path),
            python=sys.executable,
        )
        write_private_file(scratch.agent_config_path, self.agent_config(scratch, join_token).render().encode())
        env = {**os.environ, **{str(k): str(v) for k, v in (extra.get("env") or {}).items()}}
        cwd = extra.get("cwd") or None  # inherited: the config holds absolute paths only
        with open(scratch.agent_log_path, "ab") as log:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise HpcsError(
                    f"cannot start the SPIRE agent ({argv[0]}): {exc.strerror}; check the "
                    f"'command' extra of connection '{self.spire_agent_conn_id}'"
                ) from None
        scratch.agent_pid_path.write_text(f"{proc.pid}\n")
        self.log.info("SPIRE agent started: pid %s, socket %s", proc.pid, scratch.socket_path)
        return proc.pid

    def wait_ready(self, scratch: RunScratch, timeout: float | None = None) -> None:
        timeout = float(timeout or self._load().get("ready_timeout", 60))
        pid = self.pid(scratch)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _socket_ready(scratch.socket_path):
                # attested: the (used) join token need not stay on disk either
                write_private_file(scratch.agent_config_path, self.agent_config(scratch).render().encode())
                return
            if pid is None or not _alive(pid):
                raise HpcsTransientError(
                    f"the SPIRE agent exited before opening its Workload API socket; "
                    f"last log lines:\n{self.log_tail(scratch)}"
                )
            time.sleep(0.2)
        raise HpcsTransientError(
            f"no SPIRE Workload API socket at {scratch.socket_path} after {timeout:.0f}s; "
            f"last log lines:\n{self.log_tail(scratch)}"
        )

    @staticmethod
    def pid(scratch: RunScratch) -> int | None:
        try:
            return int(scratch.agent_pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def log_tail(scratch: RunScratch, lines: int = 20) -> str:
        try:
            text = scratch.agent_log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no agent log)"
        # The join token is in the 0600 config only, but be safe if an agent echoes it.
        return "\n".join(line for line in text if "token" not in line.lower())

    def stop(self, scratch: RunScratch, grace: float = 10.0) -> bool:
        """Stop the run's agent (its whole process group). True when one was running."""
        pid = self.pid(scratch)
        if pid is None:
            return False
        was_running = _alive(pid)
        if was_running:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                self.log.warning("SPIRE agent %s ignored SIGTERM for %.0fs: SIGKILL", pid, grace)
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _alive(pid):  # reaps it when it is our child
                    time.sleep(0.05)
        scratch.agent_pid_path.unlink(missing_ok=True)
        return was_running

    @staticmethod
    def fetch_jwt_svid(
        socket_path: str | os.PathLike, audience: str, timeout: float = 30.0, subject: str | None = None
    ) -> JwtSvid:
        """A JWT-SVID for ``audience`` from the Workload API at ``socket_path``; retried until the
        agent has synced its entries or ``timeout`` passes."""
        from spiffe import WorkloadApiClient
        from spiffe.spiffe_id.spiffe_id import SpiffeId

        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            try:
                client = WorkloadApiClient(socket_path=f"unix://{socket_path}", default_timeout=10)
                try:
                    svid = client.fetch_jwt_svid(audience={audience}, subject=SpiffeId(subject) if subject else None)
                finally:
                    client.close()
                mask_secret(svid.token)
                return JwtSvid(token=svid.token, spiffe_id=str(svid.spiffe_id), expiry=int(svid.expiry))
            except Exception as exc:  # noqa: BLE001 - retried, then reported without details
                last = type(exc).__name__
            if time.monotonic() >= deadline:
                raise HpcsTransientError(
                    f"no JWT-SVID from the Workload API at {socket_path} after {timeout:.0f}s ({last})"
                )
            time.sleep(0.5)
