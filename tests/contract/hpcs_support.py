"""Helpers shared by the HPCS contract tests (Vault, SPIRE, HPCS server): starting a SPIRE agent the
way the pipeline does (a command template and an HCL config), and the SPIRE stand-in's admin API."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
STANDIN_AGENT_COMMAND = "{python} -m devstack.spire agent run -config {config} -joinToken {token}"


class Agent:
    """A SPIRE agent process (the stand-in, or the real ``spire-agent`` via ``SPIRE_AGENT_COMMAND``)."""

    def __init__(
        self,
        workdir: Path,
        *,
        server_address: str,
        server_port: int,
        trust_domain: str,
        token: str,
        command: str | None = None,
    ):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.socket = self.dir / "agent.sock"
        self.config = self.dir / "agent.conf"
        self.log = self.dir / "agent.log"
        self.config.write_text(
            "agent {\n"
            f'    data_dir = "{self.dir / "data"}"\n'
            '    log_level = "DEBUG"\n'
            f'    server_address = "{server_address}"\n'
            f"    server_port = {server_port}\n"
            f'    socket_path = "{self.socket}"\n'
            f'    trust_domain = "{trust_domain}"\n'
            "    insecure_bootstrap = true\n"
            "}\n"
            "plugins {\n"
            '    KeyManager "memory" {\n        plugin_data {}\n    }\n'
            '    NodeAttestor "join_token" {\n        plugin_data {}\n    }\n'
            '    WorkloadAttestor "unix" {\n        plugin_data {}\n    }\n'
            "}\n"
        )
        template = command or os.environ.get("SPIRE_AGENT_COMMAND") or STANDIN_AGENT_COMMAND
        argv = [
            part.format(python=sys.executable, config=str(self.config), token=token)
            for part in shlex.split(template)
        ]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError(f"agent socket never appeared: {self.log.read_text()[-2000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode


class SpireAdmin:
    """The SPIRE server stand-in's admin API (the real one is ``spire-server`` on its admin socket)."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    def join_token(self, spiffe_id: str | None = None, ttl: int = 600) -> str:
        body = {"ttl": ttl, **({"spiffe_id": spiffe_id} if spiffe_id else {})}
        resp = requests.post(f"{self.url}/admin/v1/join_tokens", json=body, headers=self.headers, timeout=10)
        assert resp.status_code == 201, resp.text
        return resp.json()["value"]

    def entry(self, spiffe_id: str, parent_id: str, selectors: list[str]) -> requests.Response:
        return requests.post(
            f"{self.url}/admin/v1/entries",
            headers=self.headers,
            timeout=10,
            json={"spiffe_id": spiffe_id, "parent_id": parent_id, "selectors": selectors},
        )

    def entries(self, **query: str) -> list[dict]:
        resp = requests.get(f"{self.url}/admin/v1/entries", params=query, headers=self.headers, timeout=10)
        resp.raise_for_status()
        return resp.json()["entries"]
