"""Large files in parallel streams (python-irodsclient parallel put/get) against the iRODS stand-in."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import irods.parallel
import pytest

from include.stager.errors import TransientError
from include.stager.irods import IrodsClient, sha2_of
from include.stager.paths import parse_endpoint
from include.stager.transfer import Sync

BIG = 64 << 20


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parallel") / "src"
    root.mkdir()
    with open(root / "big.bin", "wb") as fh:
        for _ in range(BIG >> 22):
            fh.write(os.urandom(4 << 20))
    (root / "small.txt").write_bytes(b"small\n")
    return root


@pytest.fixture
def streams(monkeypatch) -> list[tuple[int, str]]:
    """Every parallel transfer python-irodsclient runs: (operation, local file)."""
    seen: list[tuple[int, str]] = []
    real = irods.parallel.io_main

    def spy(session, data, opr, fname, *a, **kw):
        seen.append((int(opr) & irods.parallel.Oper.PUT, os.path.basename(fname)))
        return real(session, data, opr, fname, *a, **kw)

    monkeypatch.setattr(irods.parallel, "io_main", spy)
    return seen


def file_sha2(path) -> str:
    with open(path, "rb") as fh:
        return sha2_of(hashlib.file_digest(fh, "sha256").digest())


def sync(src, dst, account, **kw):
    kw.setdefault("report_interval", 0.5)
    return Sync(parse_endpoint(src), parse_endpoint(dst), account, **kw).run()


def test_64mib_both_ways_in_parallel_streams_verified_and_skipped_on_rerun(big_tree, tmp_path, alice, coll,
                                                                             client, streams):
    t0 = time.monotonic()
    up = sync(str(big_tree), f"irods:{coll}", alice, threads=2, num_threads=4)
    t_up = time.monotonic() - t0
    assert (up.processed, up.failed, up.bytes_done) == (2, 0, BIG + 6)
    assert streams == [(irods.parallel.Oper.PUT, "big.bin")]  # the small file went single-stream
    remote = client.stat(f"{coll}/big.bin")
    assert (remote.size, remote.checksum) == (BIG, file_sha2(big_tree / "big.bin"))

    t0 = time.monotonic()
    down = sync(f"irods:{coll}", str(tmp_path / "down"), alice, threads=2, num_threads=4)
    t_down = time.monotonic() - t0
    assert (down.processed, down.failed) == (2, 0)
    assert streams[1] == (irods.parallel.Oper.GET, ".big.bin.stager-part")
    assert file_sha2(tmp_path / "down/big.bin") == remote.checksum
    assert not list((tmp_path / "down").glob(".*stager-part"))

    # the skip rule holds: same size and checksum both ways, nothing moves
    again_up = sync(str(big_tree), f"irods:{coll}", alice, num_threads=4)
    again_down = sync(f"irods:{coll}", str(tmp_path / "down"), alice, num_threads=4)
    assert again_up.skipped == again_down.skipped == 2 and len(streams) == 2
    print(f"64 MiB up {t_up:.2f}s, down {t_down:.2f}s")


def test_threshold_single_thread_and_tiny_files_keep_one_stream(big_tree, alice, coll, client, streams):
    sync(str(big_tree), f"irods:{coll}/a", alice, num_threads=4, parallel_threshold=BIG)  # not above
    sync(str(big_tree), f"irods:{coll}/b", alice, num_threads=1)
    sync(str(big_tree), f"irods:{coll}/c", alice, num_threads=4, parallel_threshold=0)  # small.txt: 6 bytes
    assert streams == [(irods.parallel.Oper.PUT, "big.bin")]  # never a stream without bytes to move
    assert client.stat(f"{coll}/b/big.bin").checksum == file_sha2(big_tree / "big.bin")


def test_a_failing_stream_stops_them_all_and_leaves_the_object_writable(big_tree, tmp_path, alice, coll,
                                                                        client):
    client.mkdirs(coll)
    target = f"{coll}/big.bin"
    moved = []

    def fail_after_8mib(n):
        moved.append(n)
        if sum(moved) > 8 << 20:
            raise TransientError("disk went away")

    t0 = time.monotonic()
    with pytest.raises(TransientError, match="disk went away"):
        client.put(str(big_tree / "big.bin"), target, fail_after_8mib, num_threads=4)
    assert time.monotonic() - t0 < 20
    assert sum(moved) < BIG
    # the aborted streams were closed: the replica is not left locked, a new upload and download work
    assert client.put(str(big_tree / "big.bin"), target, lambda n: None, num_threads=4) == \
        file_sha2(big_tree / "big.bin")

    stop = threading.Event()

    def stop_after_24mib(n):
        moved.append(n)
        if sum(moved) > 24 << 20:
            stop.set()

    with pytest.raises(TransientError, match="stopped while reading"):
        client.get(target, str(tmp_path / "part"), file_sha2(big_tree / "big.bin"), stop_after_24mib,
                   num_threads=4, stop=stop)
    with IrodsClient(alice) as other:
        back = tmp_path / "back"
        other.get(target, str(back), file_sha2(big_tree / "big.bin"), lambda n: None, num_threads=4)
        assert file_sha2(back) == file_sha2(big_tree / "big.bin")
