"""An SFTP-only SSH server (asyncssh): public-key authentication against an authorized_keys file,
every path confined to ``--root`` (no escape with ``..``, absolute paths or symbolic links), no
shell, exec, scp or port forwarding. Used for the supercomputer's storage and the EGA inbox.
"""

from __future__ import annotations

import logging
import os
import posixpath
from pathlib import Path

import asyncssh

log = logging.getLogger("devstack.sftp")


class ConfinedSFTPServer(asyncssh.SFTPServer):
    """asyncssh's chroot maps paths lexically; this also refuses paths that resolve (through
    symbolic links) outside the root, and hard links."""

    def __init__(self, chan: asyncssh.SSHServerChannel, root: str):
        super().__init__(chan, chroot=root.encode())
        self._root = os.path.realpath(root)
        log.info("sftp session for %s", chan.get_extra_info("username"))

    def map_path(self, path: bytes) -> bytes:
        mapped = super().map_path(path)
        real = os.path.realpath(os.fsdecode(mapped))
        if real != self._root and not real.startswith(self._root + os.sep):
            raise asyncssh.SFTPPermissionDenied("path is outside the served directory")
        return mapped

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        if posixpath.isabs(oldpath):
            target = self.map_path(oldpath)
        else:
            target = self.map_path(posixpath.join(posixpath.dirname(newpath), oldpath))
        link = self.map_path(newpath)
        os.symlink(
            os.path.relpath(os.fsdecode(target), os.path.dirname(os.fsdecode(link))), os.fsdecode(link)
        )

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("hard links are not supported")


def ensure_keys(state_dir: Path | None, host_key: Path, authorized_keys: Path) -> None:
    """Generate the host key, and (under ``state_dir``) a client key pair authorised to log in."""
    if not host_key.exists():
        host_key.parent.mkdir(parents=True, exist_ok=True)
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(host_key))
        os.chmod(host_key, 0o600)
    if state_dir is not None:
        client = state_dir / "id_ed25519"
        if not client.exists():
            key = asyncssh.generate_private_key("ssh-ed25519", comment="devstack-sftp-client")
            key.write_private_key(str(client))
            os.chmod(client, 0o600)
            key.write_public_key(str(client) + ".pub")
        if not authorized_keys.exists():
            authorized_keys.parent.mkdir(parents=True, exist_ok=True)
            authorized_keys.write_text(Path(str(client) + ".pub").read_text())
    if not authorized_keys.exists():
        raise SystemExit(f"authorized keys file {authorized_keys} does not exist")


async def start(
    host: str, port: int, root: Path, authorized_keys: Path, host_key: Path, user: str | None = None
) -> asyncssh.SSHAcceptor:
    root.mkdir(parents=True, exist_ok=True)
    real_root = os.path.realpath(root)

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return False

        def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
            if user is not None and username != user:
                return False
            keys = asyncssh.read_authorized_keys(str(authorized_keys))  # re-read: keys may be added
            return keys.validate(key, username, "127.0.0.1", "127.0.0.1") is not None

        def public_key_auth_supported(self) -> bool:
            return True

    return await asyncssh.listen(
        host,
        port,
        server_factory=Server,
        server_host_keys=[str(host_key)],
        sftp_factory=lambda chan: ConfinedSFTPServer(chan, real_root),
        allow_scp=False,
        agent_forwarding=False,
        allow_pty=False,
        x11_forwarding=False,
        # no process_factory: shell and exec requests are refused
    )
