from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from include.ega.errors import UserError
from include.ega.storage import PosixArchive, PosixInbox, S3Archive, S3Inbox, SftpInbox


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "\\x", "", "a\0b", ".", "./", "a/.."])
def test_bad_paths(path, tmp_path):
    with pytest.raises(UserError):
        PosixInbox(tmp_path).path("alice", path)
    with pytest.raises(UserError):
        S3Inbox(None, "bucket").key("alice", path)


def test_good_paths(tmp_path):
    assert S3Inbox(None, "bucket", "in/").key("alice", "a/b.c4gh") == "in/alice/a/b.c4gh"
    assert S3Inbox(None, "bucket").key("alice", "./a//b.c4gh") == "alice/a/b.c4gh"
    assert PosixInbox(tmp_path).path("alice", "./a//b.c4gh") == os.path.realpath(tmp_path) + "/alice/a/b.c4gh"


@pytest.fixture
def inbox(tmp_path):
    (tmp_path / "inbox" / "alice" / "dir").mkdir(parents=True)
    (tmp_path / "inbox" / "alice" / "dir" / "f.c4gh").write_bytes(b"data")
    (tmp_path / "inbox" / "bob").mkdir()
    (tmp_path / "inbox" / "bob" / "secret").write_bytes(b"bob's")
    (tmp_path / "outside").write_bytes(b"outside")
    return tmp_path


def test_posix_inbox_reads_inside(inbox):
    box = PosixInbox(inbox / "inbox")
    with box.open("alice", "dir/f.c4gh") as f:
        assert f.read() == b"data"
    assert box.size("alice", "dir/f.c4gh") == 4


def test_posix_inbox_rejects_symlinks_out(inbox):
    alice = inbox / "inbox" / "alice"
    os.symlink(inbox / "outside", alice / "link")
    os.symlink(inbox / "inbox" / "bob" / "secret", alice / "bobs")
    os.symlink(inbox, alice / "dirlink")
    box = PosixInbox(inbox / "inbox")
    for p in ("link", "bobs", "dirlink/outside"):
        with pytest.raises(UserError, match="outside your inbox"):
            box.open("alice", p)


def test_posix_inbox_missing_and_bad_user(inbox):
    box = PosixInbox(inbox / "inbox")
    with pytest.raises(UserError, match="not found"):
        box.open("alice", "nope.c4gh")
    with pytest.raises(UserError, match="not a regular file"):
        box.open("alice", "dir")
    with pytest.raises(UserError, match="user"):
        box.open("../bob", "secret")


def test_posix_archive_is_atomic(tmp_path):
    arch = PosixArchive(tmp_path / "archive")
    with pytest.raises(RuntimeError), arch.writer("abc") as out:
        out.write(b"partial")
        raise RuntimeError("crash mid-write")
    assert list((tmp_path / "archive").iterdir()) == []
    with arch.writer("abc") as out:
        out.write(b"body")
        assert not arch.exists("abc")
    assert arch.exists("abc") and arch.size("abc") == 4
    with arch.open("abc") as f:
        assert f.read() == b"body"
    arch.delete("abc")
    arch.delete("abc")
    assert not arch.exists("abc")
    with pytest.raises(ValueError):
        arch.open("../x")


@mock_aws
def test_s3_archive_multipart_and_inbox():
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket="archive")
    client.create_bucket(Bucket="inbox")
    arch = S3Archive(client, "archive", part_size=5 * 1024 * 1024)
    data = os.urandom(11 * 1024 * 1024 + 3)
    with pytest.raises(RuntimeError), arch.writer("partial") as out:
        out.write(data[: 6 * 1024 * 1024])
        raise RuntimeError("crash")
    assert not arch.exists("partial")
    assert client.list_multipart_uploads(Bucket="archive").get("Uploads", []) == []
    with arch.writer("obj") as out:
        for i in range(0, len(data), 1 << 20):
            out.write(data[i : i + (1 << 20)])
    assert arch.size("obj") == len(data)
    with arch.open("obj") as f:
        assert f.read() == data
    with arch.writer("empty"):
        pass
    assert arch.size("empty") == 0
    arch.delete("obj")
    assert not arch.exists("obj")

    client.put_object(Bucket="inbox", Key="alice/dir/f.c4gh", Body=b"hello")
    box = S3Inbox(client, "inbox")
    with box.open("alice", "dir/f.c4gh") as f:
        assert f.read() == b"hello"
    assert box.size("alice", "dir/f.c4gh") == 5
    with pytest.raises(UserError, match="not found"):
        box.open("alice", "missing")
    with pytest.raises(UserError):
        box.open("alice", "../bob/x")


class FakeSftp:
    """The part of paramiko's SFTPClient that SftpInbox uses, over a local directory."""

    def __init__(self, root: Path):
        self.root = root

    def _local(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def normalize(self, path: str) -> str:
        real = os.path.realpath(self._local(path))
        if not os.path.exists(real):
            raise FileNotFoundError(2, "No such file")
        return "/" + os.path.relpath(real, self.root) if real.startswith(str(self.root)) else real

    def stat(self, path: str):
        return os.stat(self._local(path))

    def open(self, path: str, mode: str, bufsize: int = -1):
        f = open(self._local(path), mode)  # noqa: SIM115
        f.prefetch = lambda size=None: None
        return f


def test_sftp_inbox(inbox):
    box = SftpInbox(FakeSftp(inbox), "/inbox")
    with box.open("alice", "dir/f.c4gh") as f:
        assert f.read() == b"data"
    os.symlink(inbox / "outside", inbox / "inbox" / "alice" / "link")
    with pytest.raises(UserError, match="outside your inbox"):
        box.open("alice", "link")
    with pytest.raises(UserError, match="not found"):
        box.open("alice", "missing")
    with pytest.raises(UserError, match="not a regular file"):
        box.open("alice", "dir")
    assert stat.S_ISREG(box.sftp.stat(box.path("alice", "dir/f.c4gh")).st_mode)


def test_s3_reader_is_buffered():
    from include.ega.storage import _S3Reader

    r = io.BufferedReader(_S3Reader(io.BytesIO(b"x" * 10)))
    assert r.read(4) == b"xxxx" and r.read() == b"x" * 6


def test_posix_archive_takes_over_a_killed_writers_leftover(tmp_path):
    """A writer killed outright (no cleanup) leaves ``.tmp-<key>``; the next writer of the key reuses it."""
    import multiprocessing
    import signal

    from include.ega.errors import TransientError

    root = tmp_path / "archive"
    arch = PosixArchive(root, fsync=False)
    started = multiprocessing.Event()

    def write_forever():
        with arch.writer("first", tmp_key="file-1") as out:
            out.write(b"x" * 1000)
            started.set()
            signal.pause()

    proc = multiprocessing.get_context("fork").Process(target=write_forever)
    proc.start()
    assert started.wait(10)
    with pytest.raises(TransientError, match="another worker"), arch.writer("second", tmp_key="file-1"):
        pass  # a live writer holds the key
    assert sorted(p.name for p in root.iterdir()) == [".tmp-file-1"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert sorted(p.name for p in root.iterdir()) == [".tmp-file-1"]  # the killed writer's debris
    with arch.writer("second", tmp_key="file-1") as out:
        out.write(b"body")
    assert sorted(p.name for p in root.iterdir()) == ["second"]
    assert arch.size("second") == 4
