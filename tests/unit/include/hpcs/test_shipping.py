"""upload_resumable against a local-directory stand-in of paramiko's SFTPClient."""

import os
from pathlib import Path

import pytest

from include.hpcs.shipping import upload_resumable


class LocalSftp:
    """The part of paramiko's SFTPClient that upload_resumable uses, on a local directory."""

    def __init__(self, root: Path, fail_after: int | None = None):
        self.root = root
        self.fail_after = fail_after
        self.written = 0
        self.reads = 0

    def _p(self, path):
        return self.root / path.lstrip("/")

    def stat(self, path):
        return os.stat(self._p(path))

    def mkdir(self, path, mode=0o777):
        os.mkdir(self._p(path))

    def remove(self, path):
        os.remove(self._p(path))

    def rename(self, a, b):
        os.rename(self._p(a), self._p(b))

    def posix_rename(self, a, b):
        os.replace(self._p(a), self._p(b))

    def open(self, path, mode="r"):
        outer = self
        f = open(self._p(path), mode)

        class Wrapped:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                f.close()

            def seek(self, n):
                f.seek(n)

            def read(self, n):
                outer.reads += 1
                return f.read(n)

            def write(self, data):
                if outer.fail_after is not None and outer.written + len(data) > outer.fail_after:
                    f.write(data[: outer.fail_after - outer.written])
                    f.flush()
                    raise EOFError("connection lost")
                outer.written += len(data)
                f.write(data)

        return Wrapped()


@pytest.fixture
def local_file(tmp_path):
    p = tmp_path / "archive.c4gh"
    p.write_bytes(os.urandom(3 * 1024 * 1024 + 123))
    return p


def test_fresh_upload(tmp_path, local_file):
    remote = tmp_path / "remote"
    remote.mkdir()
    done = []
    r = upload_resumable(LocalSftp(remote), local_file, "/data/at/rest", "a.c4gh", progress=done.append)
    assert (remote / "data/at/rest/a.c4gh").read_bytes() == local_file.read_bytes()
    assert not (remote / "data/at/rest/a.c4gh.part").exists()
    assert r.size == local_file.stat().st_size and r.resumed_from == 0 and r.sent == r.size
    assert done[-1] == r.size


def test_resume_after_interruption(tmp_path, local_file):
    remote = tmp_path / "remote"
    remote.mkdir()
    with pytest.raises(EOFError):
        upload_resumable(LocalSftp(remote, fail_after=1_000_000), local_file, "/d", "a.c4gh")
    assert (remote / "d/a.c4gh.part").stat().st_size == 1_000_000
    assert not (remote / "d/a.c4gh").exists()
    r = upload_resumable(LocalSftp(remote), local_file, "/d", "a.c4gh")
    assert r.resumed_from == 1_000_000 and r.sent == r.size - 1_000_000
    assert (remote / "d/a.c4gh").read_bytes() == local_file.read_bytes()


def test_corrupt_part_restarts(tmp_path, local_file):
    remote = tmp_path / "remote"
    (remote / "d").mkdir(parents=True)
    (remote / "d/a.c4gh.part").write_bytes(b"\0" * 500_000)
    r = upload_resumable(LocalSftp(remote), local_file, "/d", "a.c4gh")
    assert r.resumed_from == 0
    assert (remote / "d/a.c4gh").read_bytes() == local_file.read_bytes()


def test_oversized_part_restarts(tmp_path, local_file):
    remote = tmp_path / "remote"
    (remote / "d").mkdir(parents=True)
    (remote / "d/a.c4gh.part").write_bytes(local_file.read_bytes() + b"extra")
    r = upload_resumable(LocalSftp(remote), local_file, "/d", "a.c4gh")
    assert r.resumed_from == 0
    assert (remote / "d/a.c4gh").read_bytes() == local_file.read_bytes()


def test_complete_file_not_sent_again(tmp_path, local_file):
    remote = tmp_path / "remote"
    (remote / "d").mkdir(parents=True)
    (remote / "d/a.c4gh").write_bytes(local_file.read_bytes())
    sftp = LocalSftp(remote)
    r = upload_resumable(sftp, local_file, "/d", "a.c4gh")
    assert r.already_there and sftp.written == 0


def test_stale_final_file_replaced(tmp_path, local_file):
    remote = tmp_path / "remote"
    (remote / "d").mkdir(parents=True)
    (remote / "d/a.c4gh").write_bytes(b"older archive")
    upload_resumable(LocalSftp(remote), local_file, "/d", "a.c4gh")
    assert (remote / "d/a.c4gh").read_bytes() == local_file.read_bytes()
