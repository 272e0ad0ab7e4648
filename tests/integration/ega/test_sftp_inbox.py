"""The SFTP inbox (paramiko, as the sftp provider's hook gives it) against the devstack SFTP server."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import paramiko
import pytest

from devstack.procs import free_port, port_open, stop_group
from include.ega.errors import UserError
from include.ega.storage import SftpInbox
from tests.unit.include.ega.support import ROOT

pytestmark = pytest.mark.integration

U = "sftp.user"


@pytest.fixture
def sftp(node, tmp_path):
    port = free_port()
    state = tmp_path / "sftp-state"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.sftp",
            "--port",
            str(port),
            "--root",
            str(node.inbox_dir),
            "--state-dir",
            str(state),
        ],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, "sftp server did not start"
            time.sleep(0.1)
        transport = paramiko.Transport(("127.0.0.1", port))
        transport.connect(username="ega", pkey=paramiko.Ed25519Key.from_private_key_file(str(state / "id_ed25519")))
        client = paramiko.SFTPClient.from_transport(transport)
        yield client
        client.close()
        transport.close()
    finally:
        stop_group(proc.pid, grace=5)


def test_ingest_from_an_sftp_inbox(node, sftp):
    node.inbox_dir.mkdir(parents=True, exist_ok=True)
    node.pipeline.inbox = SftpInbox(sftp, "/")
    plain = b"over sftp " * 20000
    node.upload(U, "dir/s.c4gh", plain)
    node.cega.trigger(U, "dir/s.c4gh")
    node.run()
    [rec] = node.file(U, "dir/s.c4gh")
    assert rec.status == "ready" and rec.decrypted_size == len(plain)


def test_sftp_inbox_rejects_paths_out_of_the_inbox(node, sftp):
    node.upload("other.user", "secret.c4gh", b"not yours")
    node.upload(U, "mine.c4gh", b"mine")
    os.symlink(node.inbox_dir / "other.user" / "secret.c4gh", node.inbox_dir / U / "link.c4gh")
    box = SftpInbox(sftp, "/")
    with box.open(U, "mine.c4gh") as f:
        assert f.read()
    with pytest.raises(UserError, match="outside your inbox"):
        box.open(U, "link.c4gh")
    with pytest.raises(UserError, match="'..' is not allowed"):
        box.open(U, "../other.user/secret.c4gh")
    with pytest.raises(UserError, match="not found"):
        box.open(U, "missing.c4gh")
