"""The transfer engine against the iRODS stand-in: both directions, skip rule, timeouts, cancel."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from include.stager.errors import Cancelled, TransferTimeout, UserError
from include.stager.irods import IrodsAccount, IrodsClient
from include.stager.paths import parse_endpoint
from include.stager.transfer import Sync
from tests.integration.stager.conftest import ZONE, make_tree, tree_listing


def sync(src, dst, account, **kw):
    kw.setdefault("report_interval", 0.5)
    return Sync(parse_endpoint(src), parse_endpoint(dst), account, **kw).run()


def test_round_trip_tree_with_300_files_and_20mb(tmp_path, alice, coll, client):
    src = tmp_path / "src"
    files = make_tree(src, small_files=300, big_mb=20)
    t0 = time.monotonic()
    up = sync(str(src), f"irods:{coll}", alice, threads=4)
    assert (up.total, up.processed, up.failed, up.skipped) == (len(files), len(files), 0, 0)
    colls, remote = client.walk(coll)
    assert {"empty dir", "sub dir/empty inner", "sub dir/deeper/nested"} <= set(colls)
    assert remote["empty file"].size == 0 and remote["big.bin"].size == 20 << 20
    assert all(rf.checksum.startswith("sha2:") for rf in remote.values())

    down = sync(f"i:{coll}", str(tmp_path / "down"), alice, threads=4)
    assert (down.processed, down.failed) == (len(files), 0)
    assert tree_listing(src) == tree_listing(tmp_path / "down")
    assert time.monotonic() - t0 < 60


def test_rerun_skips_everything_and_a_changed_file_is_resent(tmp_path, alice, coll):
    src = tmp_path / "src"
    files = make_tree(src)
    sync(str(src), f"irods:{coll}", alice)
    again = sync(str(src), f"irods:{coll}", alice)
    assert again.skipped == again.processed == len(files)

    (src / "a.txt").write_bytes(b"ALPHA\n")  # same size, other content
    (src / "sub dir/ünïcødé ✓.txt").write_text("longer content now\n")
    changed = sync(str(src), f"irods:{coll}", alice)
    assert (changed.processed, changed.skipped) == (len(files), len(files) - 2)

    down = tmp_path / "down"
    sync(f"irods:{coll}", str(down), alice)
    assert sync(f"irods:{coll}", str(down), alice).skipped == len(files)
    (down / "a.txt").write_bytes(b"local!")
    redo = sync(f"irods:{coll}", str(down), alice)
    assert redo.skipped == len(files) - 1
    assert (down / "a.txt").read_bytes() == b"ALPHA\n"


def test_symlinks_and_special_files_are_skipped_with_a_warning(tmp_path, alice, coll, client, caplog):
    src = tmp_path / "src"
    src.mkdir()
    (src / "real.txt").write_text("x")
    (src / "link").symlink_to(src / "real.txt")
    os.mkfifo(src / "fifo")
    with caplog.at_level(logging.WARNING):
        p = sync(str(src), f"irods:{coll}", alice)
    assert p.total == 1
    assert "link (symbolic link)" in caplog.text and "fifo (special file)" in caplog.text
    assert set(client.walk(coll)[1]) == {"real.txt"}


def test_single_file_both_ways(tmp_path, alice, coll, client):
    f = tmp_path / "one file.txt"
    f.write_text("one")
    client.mkdirs(coll)
    sync(str(f), f"irods:{coll}", alice)  # into an existing collection: keeps its name
    assert client.stat(f"{coll}/one file.txt").size == 3
    sync(f"irods:{coll}/one file.txt", str(tmp_path / "copy.txt"), alice)
    assert (tmp_path / "copy.txt").read_text() == "one"


def test_wrong_credential_is_a_user_error(tmp_path, alice, coll):
    (tmp_path / "f").write_text("x")
    bad = IrodsAccount(alice.host, alice.port, alice.zone, "alice", "wrong")
    with pytest.raises(UserError, match="rejected the data-repository credential"):
        sync(str(tmp_path / "f"), f"irods:{coll}", bad)


def test_missing_sources_are_user_errors(tmp_path, alice, coll):
    with pytest.raises(UserError, match="does not exist"):
        sync(str(tmp_path / "nope"), f"irods:{coll}", alice)
    with pytest.raises(UserError, match="does not exist in the repository"):
        sync(f"irods:{coll}/nope", str(tmp_path / "d"), alice)


def test_permission_denied_in_the_repository_is_a_user_error(tmp_path, alice):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="permission denied"):
        sync(str(tmp_path), f"irods:/{ZONE}/home/bob/stolen", alice)


def test_download_of_an_object_without_checksum_fails(tmp_path, alice, coll, client):
    client.mkdirs(coll)
    with client.session.data_objects.open(f"{coll}/raw.bin", "w") as fh:
        fh.write(b"no checksum registered")
    with pytest.raises(UserError, match="has no checksum"):
        sync(f"irods:{coll}", str(tmp_path / "d"), alice)
    assert not (tmp_path / "d" / "raw.bin").exists()


RELEASE = threading.Event()


class StallingClient(IrodsClient):
    """Sends nothing until released: a stalled source."""

    def put(self, local, remote, on_bytes, **kw):
        RELEASE.wait(8)
        raise OSError("stalled")


class SlowClient(IrodsClient):
    def put(self, local, remote, on_bytes, **kw):
        time.sleep(0.03)
        return super().put(local, remote, on_bytes, **kw)


def test_stalled_source_hits_the_noprogress_timeout(tmp_path, alice, coll):
    make_tree(tmp_path / "src")
    t0 = time.monotonic()
    with pytest.raises(TransferTimeout, match="no progress for timeout_noprogress=1s"):
        sync(str(tmp_path / "src"), f"irods:{coll}", alice, timeout_noprogress=1,
             client_factory=StallingClient)
    assert time.monotonic() - t0 < 6
    RELEASE.set()  # let the stalled threads end inside the test
    time.sleep(0.3)


def test_overall_timeout(tmp_path, alice, coll):
    make_tree(tmp_path / "src", small_files=100)
    job = Sync(parse_endpoint(str(tmp_path / "src")), parse_endpoint(f"irods:{coll}"), alice, timeout=1,
               threads=1, client_factory=SlowClient, report_interval=0.5)
    with pytest.raises(TransferTimeout, match="within timeout=1s"):
        job.run()
    assert job.progress.processed < job.progress.total
    # the abandoned worker thread ends its current file first (in production the child process is gone):
    # until then that replica is locked, as in iRODS, and a re-run would fail on it
    time.sleep(0.5)
    # a re-run resumes: what was sent is skipped
    p = sync(str(tmp_path / "src"), f"irods:{coll}", alice, threads=4)
    assert p.skipped >= job.progress.processed and p.failed == 0 and p.processed == p.total


def test_cancel_in_the_middle_and_progress_at_a_steady_pace(tmp_path, alice, coll):
    make_tree(tmp_path / "src", small_files=200)
    cancel = threading.Event()
    reports = []

    def report(p):
        reports.append((time.monotonic(), p.processed))
        if p.processed >= 20:
            cancel.set()

    with pytest.raises(Cancelled):
        sync(str(tmp_path / "src"), f"irods:{coll}", alice, threads=2, client_factory=SlowClient,
             report=report, report_interval=0.2, cancel=cancel)
    done = reports[-1][1]
    assert 20 <= done < 204
    assert len(reports) >= 4
    gaps = [b[0] - a[0] for a, b in zip(reports[1:-2], reports[2:-1], strict=False)]
    assert all(0.1 < g < 2.0 for g in gaps), gaps
    assert [r[1] for r in reports] == sorted(r[1] for r in reports)


def test_destination_top_level_is_created_for_downloads_into_new_paths(tmp_path, alice, coll, client):
    client.mkdirs(f"{coll}/only/empty")
    sync(f"irods:{coll}", str(tmp_path / "new" / "top"), alice)
    assert (tmp_path / "new" / "top" / "only" / "empty").is_dir()


def test_upload_replaces_an_existing_object(tmp_path, alice, coll, client):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"1" * 10)
    sync(str(tmp_path / "src"), f"irods:{coll}", alice)
    (tmp_path / "src" / "f").write_bytes(b"2" * 20)
    sync(str(tmp_path / "src"), f"irods:{coll}", alice)
    got = Path(tmp_path / "back")
    sync(f"irods:{coll}", str(got), alice)
    assert (got / "f").read_bytes() == b"2" * 20


def test_large_500mb_and_2000_files_both_ways(tmp_path, alice, coll):
    files = make_tree(tmp_path / "src", small_files=2000, big_mb=500)
    up = sync(str(tmp_path / "src"), f"irods:{coll}", alice, threads=4)
    assert (up.processed, up.failed) == (len(files), 0)
    down = sync(f"irods:{coll}", str(tmp_path / "down"), alice, threads=4)
    assert (down.processed, down.failed) == (len(files), 0)
    assert sync(str(tmp_path / "src"), f"irods:{coll}", alice).skipped == len(files)
