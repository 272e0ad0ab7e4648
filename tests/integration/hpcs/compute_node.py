"""Acting as an HPCS compute node and its users, independently of the pipeline's own code:
a node's SPIRE agent (devstack stand-in) with a join token from ``/api/agents/token``, a JWT-SVID
from its Workload API, a Vault JWT login, a KV v2 read, an SFTP download and ``crypt4gh decrypt``.

Shared by the integration and the e2e tests.
"""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import paramiko
import requests

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "devstack" / "spire" / "agent.conf.template"
CRYPT4GH = Path(sys.executable).with_name("crypt4gh")


class NodeAgent:
    """A devstack SPIRE agent for one compute node (``spiffe://<td>/h/<node>``) or any join token."""

    def __init__(self, workdir: Path, token: str, spire_port: int | str, trust_domain: str = "hpcs.local"):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "api.sock"
        env = {
            **os.environ,
            "SPIRE_AGENT_DATA_DIR": str(self.dir / "data"),
            "SPIRE_SERVER_ADDRESS": "127.0.0.1",
            "SPIRE_SERVER_PORT": str(spire_port),
            "SPIRE_AGENT_SOCKET": str(self.socket),
            "SPIRE_TRUST_DOMAIN": trust_domain,
        }
        self.log = open(self.dir / "agent.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack.spire",
                "agent",
                "run",
                "-config",
                str(TEMPLATE),
                "-expandEnv",
                "-joinToken",
                token,
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node agent did not start:\n{(self.dir / 'agent.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def jwt_svid(self, audience: str, subject: str | None = None, timeout: float = 20) -> str:
        from spiffe import WorkloadApiClient
        from spiffe.spiffe_id.spiffe_id import SpiffeId

        deadline = time.monotonic() + timeout
        while True:
            client = WorkloadApiClient(socket_path=f"unix://{self.socket}", default_timeout=5)
            try:
                return client.fetch_jwt_svid(audience={audience}, subject=SpiffeId(subject) if subject else None).token
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
            finally:
                client.close()

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.log.close()


def node_token(hpcs_url: str, hostname: str) -> str:
    resp = requests.post(f"{hpcs_url}/api/agents/token", params={"hostname": hostname}, timeout=30)
    body = resp.json()
    assert resp.status_code == 200 and body["success"] is True, body
    return body["token"]


def client_token(hpcs_url: str) -> tuple[str, str]:
    """A fresh join token for this host's HPCS client identity: (client_id, token)."""
    body = requests.post(f"{hpcs_url}/api/client/register", timeout=30).json()
    assert body["success"] is True, body
    return body["client_id"], body["token"]


def vault_login(vault_url: str, role: str, jwt: str) -> requests.Response:
    return requests.post(f"{vault_url}/v1/auth/jwt/login", json={"role": role, "jwt": jwt}, timeout=30)


def vault_read(vault_url: str, token: str, secret_path: str, mount: str = "kv") -> requests.Response:
    return requests.get(f"{vault_url}/v1/{mount}/data/{secret_path}", headers={"X-Vault-Token": token}, timeout=30)


def sftp_download(port: int | str, key_file: str | Path, remote: str, local: Path, user: str = "hpcs") -> None:
    transport = paramiko.Transport(("127.0.0.1", int(port)))
    try:
        transport.connect(username=user, pkey=paramiko.Ed25519Key.from_private_key_file(str(key_file)))
        sftp = paramiko.SFTPClient.from_transport(transport)
        sftp.get(remote, str(local))
    finally:
        transport.close()


def decrypt_and_untar(archive: Path, key_pem: str, dest: Path) -> Path:
    """``crypt4gh decrypt`` (the CLI) then untar into ``dest``; returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    sk = dest.parent / "archive.sec"
    sk.write_text(key_pem)
    os.chmod(sk, 0o600)
    with open(archive, "rb") as src:
        plain = subprocess.run(
            [str(CRYPT4GH), "decrypt", "--sk", str(sk)],
            stdin=src,
            capture_output=True,
            check=True,
            env={**os.environ, "C4GH_PASSPHRASE": ""},
        ).stdout
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:*") as tar:
        tar.extractall(dest, filter="tar")
    return dest


def tree_listing(root: Path) -> dict[str, tuple]:
    """name -> (kind, mode, content or link target) for everything below ``root``."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", None, os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), None)
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
    return out


def make_input(top: Path) -> Path:
    """The test input: files (one spanning many segments), modes, an empty directory, links in and out."""
    (top / "sub" / "empty").mkdir(parents=True)
    (top / "sub" / "deeper").mkdir()
    (top / "readme.txt").write_text("HPCS test dataset\n")
    (top / "sub" / "data.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (top / "sub" / "deeper" / "tiny").write_bytes(b"x")
    (top / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(top / "run.sh", 0o750)
    os.chmod(top / "sub" / "deeper", 0o750)
    os.symlink("../readme.txt", top / "sub" / "readme-link")
    os.symlink("/etc/hostname", top / "outside-link")
    return top
