"""The scratch directory of one run: key material, the JWT-SVID, the agent, the archive and state.

Layout (directories 0700, secret files 0600, created without following links)::

    <root>/<dag_id>/<run_id>/
        key/archive.sec    Crypt4GH private key (secret; removed by the teardown)
        key/archive.pub    public key
        svid/jwt           JWT-SVID of the run's workload (secret; removed by the teardown)
        archive/           the encrypted archive and the info file
        state.json         what was done: archive sha512, key written to Vault, shipped (no secrets)
    <socket_root>/hpcs-<hash>/   the SPIRE agent: config, data dir, Workload API socket, pid, log
                                 (kept short: a unix socket path has at most 107 bytes)

Only paths to secret files are handed around (XCom), never their content.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

MAX_SOCKET_PATH = 100


def _safe(part: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", part)
    if cleaned in ("", ".", ".."):
        cleaned = "_" + cleaned
    return cleaned


def _mkdir_private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` with mode 0600, atomically, never through a symbolic link."""
    path = Path(path)
    _mkdir_private(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_private_file(path: str | os.PathLike) -> bytes:
    """Read a secret file written by ``write_private_file``; refuse one others could read or a link."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise PermissionError(f"{path} is readable by others (mode {stat.S_IMODE(st.st_mode):o}); refusing it")
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def shred(path: str | os.PathLike) -> bool:
    """Overwrite a small secret file with zeros, then remove it. True when something was removed."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:
        path.unlink(missing_ok=True)
        return True
    try:
        size = os.fstat(fd).st_size
        os.write(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
    path.unlink(missing_ok=True)
    return True


class RunScratch:
    """The scratch directory of one DAG run (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike, dag_id: str, run_id: str, socket_root: str | os.PathLike | None = None):
        self.root = Path(root)
        self.dir = self.root / _safe(dag_id) / _safe(run_id)
        tag = hashlib.sha256(f"{self.dir.resolve()}".encode()).hexdigest()[:16]
        candidate = self.dir / "agent"
        if socket_root is None and len(str(candidate / "agent.sock")) > MAX_SOCKET_PATH:
            socket_root = tempfile.gettempdir()
        self.agent_dir = Path(socket_root) / f"hpcs-{tag}" if socket_root is not None else candidate

    # paths ------------------------------------------------------------------------------
    @property
    def key_dir(self) -> Path:
        return self.dir / "key"

    @property
    def private_key_path(self) -> Path:
        return self.key_dir / "archive.sec"

    @property
    def public_key_path(self) -> Path:
        return self.key_dir / "archive.pub"

    @property
    def svid_path(self) -> Path:
        return self.dir / "svid" / "jwt"

    @property
    def archive_dir(self) -> Path:
        return self.dir / "archive"

    @property
    def state_path(self) -> Path:
        return self.dir / "state.json"

    @property
    def socket_path(self) -> Path:
        return self.agent_dir / "agent.sock"

    @property
    def agent_config_path(self) -> Path:
        return self.agent_dir / "agent.conf"

    @property
    def agent_data_dir(self) -> Path:
        return self.agent_dir / "data"

    @property
    def agent_pid_path(self) -> Path:
        return self.agent_dir / "agent.pid"

    @property
    def agent_log_path(self) -> Path:
        return self.agent_dir / "agent.log"

    # creation ---------------------------------------------------------------------------
    def ensure(self) -> RunScratch:
        for d in (self.dir, self.key_dir, self.svid_path.parent, self.archive_dir):
            _mkdir_private(d)
        return self

    def ensure_agent_dir(self) -> Path:
        _mkdir_private(self.agent_dir)
        _mkdir_private(self.agent_data_dir)
        return self.agent_dir

    # state ------------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = self.load_state()
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        _mkdir_private(self.dir)
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_path)
        return state

    # cleanup ----------------------------------------------------------------------------
    def remove_key_material(self) -> list[str]:
        """Remove the private key and the JWT-SVID. Returns the names of what was removed."""
        removed = []
        for p in (self.private_key_path, self.svid_path):
            if shred(p):
                removed.append(p.name)
        for d in (self.key_dir, self.svid_path.parent):
            for leftover in d.glob(".*.tmp") if d.is_dir() else ():
                shred(leftover)
        return removed

    def remove_agent_dir(self) -> None:
        shutil.rmtree(self.agent_dir, ignore_errors=True)

    def remove_archive(self) -> None:
        shutil.rmtree(self.archive_dir, ignore_errors=True)
