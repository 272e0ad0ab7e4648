"""SFTP (the supercomputer's storage, also the EGA inbox): what paramiko's SFTPClient needs.

Against a real server when ``SFTP_HOST`` is set (with ``SFTP_PORT``, ``SFTP_USER``,
``SFTP_KEY_FILE`` and ``SFTP_BASE_DIR``, a writable directory for the tests), else against the
devstack stand-in. Path confinement is a property of the stand-in's served root (a chrooted
account on the real side) and is always checked against the stand-in.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import paramiko
import pytest

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def standin(devstack):
    env = devstack.start("supercomputer_sftp")
    state = Path(env["SDP_LOCAL"]) / "supercomputer_sftp"
    return {
        "host": "127.0.0.1",
        "port": int(env["SDP_SUPERCOMPUTER_SFTP_PORT"]),
        "user": "hpcs",
        "key": str(state / "id_ed25519"),
        "base": "/",
        "root": state / "root",
    }


@pytest.fixture(scope="module")
def target(request):
    if os.environ.get("SFTP_HOST"):
        return {
            "host": os.environ["SFTP_HOST"],
            "port": int(os.environ.get("SFTP_PORT", "22")),
            "user": os.environ["SFTP_USER"],
            "key": os.environ["SFTP_KEY_FILE"],
            "base": os.environ.get("SFTP_BASE_DIR", "."),
            "root": None,
        }
    return request.getfixturevalue("standin")


def connect(t, **kwargs) -> paramiko.SSHClient:
    ssh = paramiko.SSHClient()
    ssh.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - test of a local server
    ssh.connect(
        t["host"],
        port=t["port"],
        username=t["user"],
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
        **({"key_filename": t["key"]} | kwargs),
    )
    return ssh


@pytest.fixture
def sftp(target):
    ssh = connect(target)
    client = ssh.open_sftp()
    workdir = f"{target['base'].rstrip('/')}/contract-{uuid.uuid4().hex[:8]}"
    client.mkdir(workdir)
    yield client, workdir
    for name in client.listdir(workdir):
        client.remove(f"{workdir}/{name}")
    client.rmdir(workdir)
    client.close()
    ssh.close()


def test_key_auth_only(target, tmp_path):
    connect(target).close()
    with pytest.raises(paramiko.AuthenticationException):
        connect(target, key_filename=None, password="guess")
    other = tmp_path / "other_key"
    other.write_text(_fresh_ed25519())
    with pytest.raises(paramiko.AuthenticationException):
        connect(target, key_filename=str(other))


def _fresh_ed25519() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        .decode()
    )


def test_put_stat_rename_list(sftp):
    client, d = sftp
    data = os.urandom(300_000)
    client.putfo(io.BytesIO(data), f"{d}/file.part", confirm=True)
    assert client.stat(f"{d}/file.part").st_size == len(data)
    client.rename(f"{d}/file.part", f"{d}/file")
    assert sorted(client.listdir(d)) == ["file"]
    client.putfo(io.BytesIO(b"x"), f"{d}/other")
    with pytest.raises(OSError):  # SFTPv3 rename does not overwrite
        client.rename(f"{d}/other", f"{d}/file")
    client.posix_rename(f"{d}/other", f"{d}/file")  # posix-rename@openssh.com does
    assert client.stat(f"{d}/file").st_size == 1
    with pytest.raises(FileNotFoundError):
        client.stat(f"{d}/missing")


def test_append_and_resume(sftp):
    client, d = sftp
    data = os.urandom(200_000)
    with client.open(f"{d}/appended", "wb") as fh:
        fh.write(data[:70_000])
    with client.open(f"{d}/appended", "ab") as fh:  # SSH_FXF_APPEND: writes go to the end
        fh.write(data[70_000:])
    assert _read(client, f"{d}/appended") == data
    # Resume: keep what is there, seek to its size, write the rest.
    with client.open(f"{d}/resumed", "wb") as fh:
        fh.write(data[:123_457] + b"garbage-past-the-resume-point")
    done = 123_457
    with client.open(f"{d}/resumed", "r+b") as fh:
        fh.truncate(done)
        fh.seek(done)
        fh.write(data[done:])
    assert _read(client, f"{d}/resumed") == data


def _read(client, path: str) -> bytes:
    buf = io.BytesIO()
    client.getfo(path, buf)
    return buf.getvalue()


def test_path_confinement(standin, tmp_path):
    root: Path = standin["root"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    (root / "escape-link").unlink(missing_ok=True)
    (root / "escape-link").symlink_to(outside)
    ssh = connect(standin)
    client = ssh.open_sftp()
    try:
        assert client.normalize("/..") == "/" and client.normalize("../../..") == "/"
        for path in ("/../../etc/passwd", "../../../etc/passwd", "/etc/passwd"):
            with pytest.raises(OSError):
                client.stat(path)
        for path in ("/escape-link/secret.txt", "escape-link/../escape-link/secret.txt"):
            with pytest.raises(PermissionError):
                client.open(path).read()
        with pytest.raises(PermissionError):
            client.listdir("/escape-link")
        with pytest.raises(PermissionError):
            client.putfo(io.BytesIO(b"x"), "/escape-link/planted")
        assert not (outside / "planted").exists()
        # A link the client makes to an absolute path points inside the served root.
        client.symlink(str(outside / "secret.txt"), "/my-link")
        with pytest.raises(OSError):
            client.open("/my-link").read()
        client.remove("/my-link")
        # The write landed under the root, never outside it.
        client.putfo(io.BytesIO(b"ok"), "/../../inside.txt")
        assert (root / "inside.txt").read_bytes() == b"ok"
        client.remove("/inside.txt")
    finally:
        client.close()
        ssh.close()
        (root / "escape-link").unlink(missing_ok=True)
