"""Data stager benchmarks: the transfer engine (POSIX -> iRODS stand-in) against ``cp`` in the same run.

Rows ``{name, value, unit, baseline, ratio}``:

* ``stager_small_files``: files/s uploading 2,000 small files (4-16 KB, nested directories);
  baseline: ``cp -r`` of the same tree, files/s. Both write every byte once to the same disk; the
  stager also speaks the iRODS protocol per file (open, write, close, checksum) - expect a ratio
  well below 1.
* ``stager_large_file``: MB/s uploading one ``BENCH_SIZE_MB`` (default 1024) MB file; baseline:
  ``cp`` of that file, MB/s.
* ``stager_rerun_skipped``: seconds per 1,000 files of a re-run where every file is skipped
  (listing, local SHA-256, compare); baseline: ``cp -r`` of the small tree, seconds per 1,000 files.
  A ratio below 1 means resuming is cheaper than copying again.

The stand-in is ``devstack.irods`` on a free port (single stream, 4 threads of the engine).

    python -m benchmarks.stager_bench [--size-mb N] [--json]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.common import row

ROOT = Path(__file__).resolve().parents[1]
N_SMALL = 2000


def _tree(top: Path, size_mb: int) -> tuple[Path, Path]:
    small = top / "small"
    for i in range(N_SMALL):
        p = small / f"d{i % 20:02d}" / f"s{i // 500}" / f"f{i:05d}.dat"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(4096 + (i % 4) * 4096))
    big = top / "large" / "big.bin"
    big.parent.mkdir(parents=True)
    block = os.urandom(1 << 20)
    with open(big, "wb") as fh:
        for _ in range(size_mb):
            fh.write(block)
    return small, big.parent


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cp(src: Path, dst: Path) -> float:
    return _timed(lambda: subprocess.run(["cp", "-r", str(src), str(dst)], check=True))


def run(size_mb: int | None = None, workdir: str | None = None) -> list[dict]:
    size_mb = int(size_mb or os.environ.get("BENCH_SIZE_MB", 1024))
    sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]
    from devstack.procs import free_port, start_service, stop_group
    from devstack.registry import SERVICES
    from include.stager.irods import IrodsAccount
    from include.stager.paths import parse_endpoint
    from include.stager.transfer import Sync

    work = Path(tempfile.mkdtemp(prefix="stager-bench-", dir=workdir))
    port = free_port()
    proc = start_service(SERVICES["irods"], variables={"SDP_IRODS_PORT": str(port)}, local=work / "local",
                         log_dir=work / "logs", cwd=ROOT)
    account = IrodsAccount("127.0.0.1", port, "nl.ru.donders", "alice", "alice-secret")

    def sync(src: Path, coll: str):
        return Sync(parse_endpoint(str(src)), parse_endpoint(f"irods:/nl.ru.donders/home/alice/{coll}"),
                    account, threads=4, report=lambda p: None).run()

    rows: list[dict] = []
    try:
        small, large = _tree(work / "data", size_mb)
        cp_small = _cp(small, work / "cp-small")
        cp_large = _cp(large, work / "cp-large")
        up_small = _timed(lambda: sync(small, "small"))
        up_large = _timed(lambda: sync(large, "large"))
        rerun = _timed(lambda: sync(small, "small"))
        rows.append(row("stager_small_files", N_SMALL / up_small, "files/s", N_SMALL / cp_small))
        rows.append(row("stager_large_file", size_mb / up_large, "MB/s", size_mb / cp_large))
        rows.append(row("stager_rerun_skipped", rerun * 1000 / N_SMALL, "s/1000 files",
                         cp_small * 1000 / N_SMALL))
    finally:
        stop_group(proc.pid, grace=5)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    common.main(run, __doc__, argv)


if __name__ == "__main__":
    main()
