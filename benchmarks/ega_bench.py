"""EGA ingestion benchmarks: ratios against baselines measured in the same run.

Rows ``{name, value, unit, baseline, ratio}``:

* ``ingest_wall``: split a Crypt4GH file into header and archived body (the archive's atomic
  writer), computing sha256 of the whole file and of the body, in a child process, seconds;
  baseline: ``cp`` of the same file (which does not fsync either). Target ratio <= 1.3.
  ``ingest_fsync_wall``: the same with the archive's fsync before the rename (production).
* ``verify_wall``: decrypt the archived body with the archive key, computing sha256 and md5 of
  the plaintext, in a child process, seconds; baseline: ``crypt4gh decrypt < FILE > /dev/null``.
  Target ratio <= 1.5.
* ``ingest_peak_rss`` / ``verify_peak_rss``: peak RSS of those children (wait4), MB; baseline: the
  150 MB budget. ``*_peak_rss_small``: the same for a 16 MB file (baseline: the large file's), to
  show that memory does not grow with size (ratio about 1.0).

* ``e2e_files_per_s`` / ``e2e_wall``: ``BENCH_EGA_E2E_FILES`` (500) small encrypted files
  triggered by the CEGA stand-in, then ``ega_ingest`` (``max_messages`` = the count,
  ``batch_size`` ``BENCH_EGA_E2E_BATCH``, default 50) run through the REST API of a real Airflow
  (LocalExecutor, SQLite) until every file is *ready*; baseline: the same files through the
  ``include.ega`` pipeline functions in-process (drain, ingest, verify, accession; no Airflow),
  against the same broker and CEGA stand-in, with a database of its own. ``BENCH_EGA_E2E=0``
  leaves these rows out.

The file is ``BENCH_SIZE_MB`` (default 1024) MB of random bytes, encrypted by the crypt4gh CLI.
The page cache is warmed before each timing, for ours and the baseline alike.

    python -m benchmarks.ega_bench [--size-mb N] [--workdir DIR] [--json]
"""

from __future__ import annotations

import json
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
RSS_BUDGET_MB = 150.0
PASSPHRASE = "bench"  # noqa: S105 - a throw-away key of the benchmark
CRYPT4GH = str(Path(sys.executable).parent / "crypt4gh")


def _warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def make_input(work: Path, size_mb: int, name: str) -> tuple[Path, Path, Path]:
    """A random plaintext encrypted by the CLI for the node key; returns (encrypted, node sk, plain)."""
    from crypt4gh.keys import c4gh

    keys = work / "keys"
    if not (keys / "node.sec").exists():
        keys.mkdir(parents=True, exist_ok=True)
        for who in ("node", "user"):
            c4gh.generate(
                str(keys / f"{who}.sec"),
                str(keys / f"{who}.pub"),
                passphrase=PASSPHRASE.encode(),
                comment=who.encode(),
            )
    plain = work / f"{name}.bin"
    with open(plain, "wb") as f:
        block = os.urandom(8 << 20)
        left = size_mb << 20
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    enc = work / f"{name}.c4gh"
    env = {**os.environ, "C4GH_PASSPHRASE": PASSPHRASE}
    with open(plain, "rb") as fin, open(enc, "wb") as fout:
        subprocess.run(
            [CRYPT4GH, "encrypt", "--sk", str(keys / "user.sec"), "--recipient_pk", str(keys / "node.pub")],
            stdin=fin,
            stdout=fout,
            env=env,
            check=True,
        )
    plain.unlink()
    return enc, keys / "node.sec", plain


def child(argv: list[str]) -> None:
    """The measured work, in a process of its own: ``ingest SRC ARCHIVE_DIR`` or ``verify HEADER BODY SK``."""
    sys.path[:0] = [str(ROOT)]
    from include.ega import c4gh
    from include.ega.storage import PosixArchive

    if argv[0] == "ingest":
        src, archive_dir, fsync = argv[1], argv[2], argv[3] == "fsync"
        with open(src, "rb", buffering=0) as f, PosixArchive(archive_dir, fsync=fsync).writer("body") as out:
            res = c4gh.split(f, out)
        Path(archive_dir, "header").write_bytes(res.header)
        print(json.dumps({"size": res.body_size, "sha256": res.file_sha256}))
    elif argv[0] == "verify":
        header, body, sk_path = argv[1], argv[2], argv[3]
        sk = c4gh.load_private_key(Path(sk_path).read_text(), PASSPHRASE)
        keys = c4gh.session_keys(Path(header).read_bytes(), [sk])
        with open(body, "rb", buffering=0) as f:
            res = c4gh.decrypt_body(f, keys)
        print(json.dumps({"size": res.size, "sha256": res.sha256, "md5": res.md5}))


def bench(enc: Path, sk: Path, work: Path) -> dict[str, float]:
    py = [sys.executable, "-m", "benchmarks.ega_bench", "--child"]
    archive = work / "archive"
    shutil.rmtree(archive, ignore_errors=True)
    archive.mkdir()
    _warm(enc)
    start = time.perf_counter()
    subprocess.run(["cp", str(enc), str(work / "copy.c4gh")], check=True)
    cp = time.perf_counter() - start
    (work / "copy.c4gh").unlink()
    _warm(enc)
    ingest, ingest_rss, _ = common.timed_child(
        py + ["ingest", str(enc), str(archive), "nofsync"], capture=True, cwd=ROOT)
    _warm(enc)
    ingest_fsync, _, _ = common.timed_child(py + ["ingest", str(enc), str(archive), "fsync"], capture=True, cwd=ROOT)
    env = {**os.environ, "C4GH_PASSPHRASE": PASSPHRASE}
    _warm(enc)
    start = time.perf_counter()
    with open(enc, "rb") as fin, open(os.devnull, "wb") as fout:
        subprocess.run([CRYPT4GH, "decrypt", "--sk", str(sk)], stdin=fin, stdout=fout, env=env, check=True)
    bare = time.perf_counter() - start
    _warm(archive / "body")
    verify, verify_rss, _ = common.timed_child(
        py + ["verify", str(archive / "header"), str(archive / "body"), str(sk)], capture=True, cwd=ROOT
    )
    shutil.rmtree(archive, ignore_errors=True)
    return {
        "cp": cp,
        "ingest": ingest,
        "ingest_fsync": ingest_fsync,
        "ingest_rss": ingest_rss,
        "bare": bare,
        "verify": verify,
        "verify_rss": verify_rss,
    }


def _small_files(n: int, node_pub: Path, out: Path) -> list[bytes]:
    """``n`` small Crypt4GH files (1-20 KB of plaintext each), encrypted in-process for the node key."""
    import io

    from crypt4gh import lib
    from crypt4gh.keys import get_public_key

    pk = get_public_key(str(node_pub))
    files = []
    for i in range(n):
        buf = io.BytesIO()
        lib.encrypt([(0, os.urandom(32), pk)], io.BytesIO(os.urandom(1024 * (1 + i % 20))), buf)
        files.append(buf.getvalue())
    return files


def _upload_and_trigger(stack, user: str, files: list[bytes]) -> None:
    import httpx

    inbox = Path(stack.vars["SDP_LOCAL"]) / "lega" / "inbox" / user
    inbox.mkdir(parents=True, exist_ok=True)
    cega = f"http://127.0.0.1:{stack.vars['SDP_CEGA_PORT']}"
    with httpx.Client(timeout=30) as client:
        for i, data in enumerate(files):
            (inbox / f"f{i:04d}.c4gh").write_bytes(data)
            client.post(f"{cega}/trigger", json={"user": user, "filepath": f"f{i:04d}.c4gh"}).raise_for_status()


def _ready(connect, user: str) -> int:
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM files WHERE submission_user = %s AND status = 'ready'", (user,))
        return cur.fetchone()[0]


def _in_process(stack, user: str, n: int, work: Path, timeout: float) -> float:
    """The baseline: drain, ingest, verify, accession with the include.ega functions, no Airflow."""
    import psycopg2

    from include.ega.broker import Broker, BrokerSettings
    from include.ega.c4gh import load_private_key
    from include.ega.db import Database, create_database
    from include.ega.pipeline import Pipeline, drain, drain_accessions
    from include.ega.storage import PosixArchive, PosixInbox

    v, local = stack.vars, Path(stack.vars["SDP_LOCAL"]) / "lega"
    name = f"ega_bench_{os.getpid()}"
    admin = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    create_database(admin, name)

    def connect():
        return psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=name)

    db = Database(connect)
    broker = Broker(BrokerSettings(exchange=v["SDP_LEGA_EXCHANGE"], files_queue=v["SDP_LEGA_FILES_QUEUE"],
                                   accession_queue=v["SDP_LEGA_ACCESSION_QUEUE"],
                                   dead_letter_queue=v["SDP_LEGA_DEAD_LETTER_QUEUE"]))
    try:
        db.migrate()
        sk = load_private_key((local / "keys" / "lega.sec").read_text(), "devstack-lega")
        pipeline = Pipeline(db, PosixInbox(local / "inbox"), PosixArchive(work / "archive-baseline"),
                            lambda: [sk], broker.publish)
        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        ids = drain(pipeline, broker, n)
        pipeline.process(ids, ("ingest", "verify"))
        while _ready(connect, user) < n:  # CEGA's accessions arrive on stableIDs
            if time.monotonic() > deadline:
                raise RuntimeError(f"in-process: {_ready(connect, user)} of {n} ready after {timeout:.0f}s")
            waiting = drain_accessions(pipeline, broker, n)
            if waiting:
                pipeline.process(waiting, ("accession",))
            else:
                time.sleep(0.05)
        return time.perf_counter() - start
    finally:
        broker.close()
        db.close()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def e2e(work: Path, n: int | None = None, batch_size: int | None = None, timeout: float = 900) -> list[dict]:
    """End-to-end files/s through a real scheduler, against the same files in-process (see the module doc)."""
    import psycopg2

    from devstack.airflow_stack import AirflowStack
    from include.ega.keygen import ensure_keypair

    n = int(n or os.environ.get("BENCH_EGA_E2E_FILES", 500))
    batch_size = int(batch_size or os.environ.get("BENCH_EGA_E2E_BATCH", 50))
    # scheduled runs skip themselves (the Variable ega_ingest_scheduled), so only the triggered runs drain
    stack = AirflowStack(work / "airflow", executor="LocalExecutor", services=["cega"],
                         extra_env={"AIRFLOW_VAR_EGA_INGEST_SCHEDULED": "false"})
    stack.start()
    try:
        local = Path(stack.vars["SDP_LOCAL"]) / "lega"
        _, pub = ensure_keypair(local / "keys", "devstack-lega")
        files = _small_files(n, pub, work)
        _upload_and_trigger(stack, "bench-inprocess", files)
        baseline = _in_process(stack, "bench-inprocess", n, work, timeout)
        print(f"e2e: {n} files in-process in {baseline:.1f}s", file=sys.stderr)

        _upload_and_trigger(stack, "bench-airflow", files)
        stack.wait_for_dags(["ega_ingest"])
        stack.unpause("ega_ingest")  # a paused DAG's triggered runs wait

        def connect():
            return psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=stack.vars["SDP_LEGA_DB"])

        start = time.perf_counter()
        deadline = time.monotonic() + timeout
        runs = 0
        while True:
            resp = stack.trigger("ega_ingest", {"max_messages": n, "batch_size": batch_size})
            if resp.status_code != 200:
                raise RuntimeError(f"triggering ega_ingest: {resp.status_code} {resp.text}")
            runs += 1
            result = stack.wait("ega_ingest", resp.json()["dag_run_id"], timeout=max(1, deadline - time.monotonic()))
            if result.state != "success":
                raise RuntimeError(f"ega_ingest failed: {result.explain()}")
            if _ready(connect, "bench-airflow") >= n:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"Airflow: {_ready(connect, 'bench-airflow')} of {n} ready after {timeout:.0f}s")
        airflow = time.perf_counter() - start
        print(f"e2e: {n} files, batch {batch_size}: Airflow {airflow:.1f}s in {runs} run(s), "
              f"in-process {baseline:.1f}s", file=sys.stderr)
    finally:
        stack.stop()
    return [
        row("e2e_files_per_s", n / airflow, "files/s", n / baseline),
        row("e2e_wall", airflow, "s", baseline),
    ]


def run(size_mb: int | None = None, workdir: str | None = None) -> list[dict]:
    size_mb = int(size_mb or os.environ.get("BENCH_SIZE_MB", 1024))
    work = Path(tempfile.mkdtemp(prefix="ega-bench-", dir=workdir))
    rows: list[dict] = []
    try:
        enc, sk, _ = make_input(work, size_mb, "large")
        big = bench(enc, sk, work)
        enc.unlink()
        small_enc, _, _ = make_input(work, 16, "small")
        small = bench(small_enc, sk, work)
        rows.append(row("ingest_wall", big["ingest"], "s", big["cp"]))
        rows.append(row("ingest_fsync_wall", big["ingest_fsync"], "s", big["cp"]))
        rows.append(row("verify_wall", big["verify"], "s", big["bare"]))
        rows.append(row("ingest_peak_rss", big["ingest_rss"], "MB", RSS_BUDGET_MB))
        rows.append(row("verify_peak_rss", big["verify_rss"], "MB", RSS_BUDGET_MB))
        rows.append(row("ingest_peak_rss_small", small["ingest_rss"], "MB", big["ingest_rss"]))
        rows.append(row("verify_peak_rss_small", small["verify_rss"], "MB", big["verify_rss"]))
        if os.environ.get("BENCH_EGA_E2E", "1") != "0":
            rows += e2e(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1:])
        return
    common.main(run, __doc__, argv)


if __name__ == "__main__":
    main()
