"""The engine's progress through the shared ProgressReporter, fed to the job status; names from the
repository confined to the destination. A small in-memory repository stands in for the iRODS client
(the protocol itself is tested against the stand-in in tests/integration/stager)."""

from __future__ import annotations

import hashlib
import posixpath

import pytest

from include.common.progress import ProgressReporter
from include.stager.errors import TransientError, UserError
from include.stager.irods import RemoteFile, sha2_of
from include.stager.paths import parse_endpoint
from include.stager.transfer import Progress, Sync


class MemoryRepository:
    """Objects by absolute path; ``fail`` names paths whose upload fails with the given error."""

    def __init__(self, objects=None, fail=None):
        self.objects: dict[str, bytes] = dict(objects or {})
        self.colls: set[str] = {"/zone", "/zone/home"}
        self.fail = fail or {}

    def client(self, account):
        return MemoryClient(self)


class MemoryClient:
    def __init__(self, repo: MemoryRepository):
        self.repo = repo

    def login(self):
        pass

    def close(self):
        pass

    def kind(self, path):
        return "obj" if path in self.repo.objects else "coll" if path in self.repo.colls else None

    def stat(self, path):
        data = self.repo.objects.get(path)
        return None if data is None else RemoteFile(len(data), sha2_of(hashlib.sha256(data).digest()))

    def walk(self, root):
        colls = sorted(posixpath.relpath(c, root) for c in self.repo.colls if c.startswith(root + "/"))
        files = {posixpath.relpath(p, root): self.stat(p) for p in self.repo.objects if p.startswith(root + "/")}
        return colls, files

    def mkdirs(self, path):
        self.repo.colls.add(path)

    def checksum(self, path, force=False):
        return self.stat(path).checksum

    def put(self, local, remote, on_bytes, num_threads=0, stop=None):
        if remote in self.repo.fail:
            raise self.repo.fail[remote]
        with open(local, "rb") as fh:
            data = fh.read()
        on_bytes(len(data))
        self.repo.objects[remote] = data

    def get(self, remote, local, expected, on_bytes, num_threads=0, stop=None):
        data = self.repo.objects[remote]
        on_bytes(len(data))
        with open(local, "wb") as fh:
            fh.write(data)


def sync(src, dst, repo, **kw):
    return Sync(parse_endpoint(src), parse_endpoint(dst), None, client_factory=repo.client, **kw)


def test_the_job_status_is_fed_by_the_shared_reporter(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"f{i}").write_bytes(b"x" * (i + 1))
    repo = MemoryRepository({"/zone/home/dst/f0": b"x"})  # the same: skipped
    repo.colls.add("/zone/home/dst")
    reports: list[Progress] = []
    job = sync(str(src), "irods:/zone/home/dst", repo, report=reports.append, report_interval=0)
    assert isinstance(job.reporter, ProgressReporter)
    final = job.run()
    assert (final.total, final.processed, final.failed, final.skipped) == (5, 5, 0, 1)
    assert (final.bytes_total, final.bytes_done) == (15, 15)
    assert reports[0].total == 5 and reports[0].processed == 0  # the first report: the plan
    assert reports[-1] == final and final.eta == 0.0 and final.rate > 0
    processed = [r.processed for r in reports]
    assert processed == sorted(processed)  # reports go forward
    status = final.as_dict()
    assert {"total", "processed", "failed", "skipped", "bytes_total", "bytes_done", "errors", "rate",
            "eta"} <= set(status)


def test_reports_keep_their_pace(tmp_path):
    (tmp_path / "src").mkdir()
    for i in range(20):
        (tmp_path / "src" / f"f{i}").write_bytes(b"y")
    reports = []
    sync(str(tmp_path / "src"), "irods:/zone/home/dst", MemoryRepository(), report=reports.append,
         report_interval=3600).run()
    assert len(reports) == 2  # the plan and the end: nothing in between within the interval


def test_failed_files_are_counted_and_the_job_fails_with_the_first_error(tmp_path):
    (tmp_path / "src").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "src" / name).write_bytes(b"z")
    repo = MemoryRepository(fail={"/zone/home/dst/b": TransientError("connection reset")})
    reports = []
    job = sync(str(tmp_path / "src"), "irods:/zone/home/dst", repo, report=reports.append, report_interval=0)
    with pytest.raises(TransientError, match="1 of 3 files failed; first error: b: connection reset"):
        job.run()
    last = reports[-1]
    assert (last.processed, last.failed) == (2, 1) and last.errors[0].startswith("b: connection reset")


def test_a_user_error_on_every_failed_file_fails_the_job_as_a_user_error(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a").write_bytes(b"z")
    repo = MemoryRepository(fail={"/zone/home/dst/a": UserError("permission denied: /zone/home/dst/a")})
    with pytest.raises(UserError, match="1 of 1 files failed"):
        sync(str(tmp_path / "src"), "irods:/zone/home/dst", repo).run()


@pytest.mark.parametrize("name", ["../escape", "sub/../../escape"])
def test_repository_names_that_lead_out_of_the_destination_are_refused(tmp_path, name):
    repo = MemoryRepository({"/zone/home/src/ok": b"1", f"/zone/home/src/{name}": b"2"})
    repo.colls.add("/zone/home/src")
    with pytest.raises(UserError, match="repository path .*'..' is not allowed"):
        sync("irods:/zone/home/src", str(tmp_path / "dst"), repo).run()
    assert not (tmp_path / "escape").exists() and not (tmp_path / "dst" / "ok").exists()


def test_a_download_through_the_engine(tmp_path):
    repo = MemoryRepository({"/zone/home/src/sub/a": b"abc"})
    repo.colls |= {"/zone/home/src", "/zone/home/src/sub"}
    final = sync("irods:/zone/home/src", str(tmp_path / "dst"), repo, report=lambda p: None).run()
    assert (tmp_path / "dst" / "sub" / "a").read_bytes() == b"abc"
    assert (final.total, final.processed, final.bytes_done) == (1, 1, 3)
