"""EGA faults with a real Airflow (local and celery executors): a worker killed mid-ingest.

The ``ingest`` task of ``ega_ingest_file`` copies a few hundred MB from the inbox to the archive.
While it does, the test finds the process that has the inbox file open (the task process), and
SIGKILLs it together with its parent, the Airflow worker process that supervises it and sends its
heartbeats. Nothing can clean up or report: Airflow must notice the missing heartbeats (the
harness sets a 30 s heartbeat timeout), retry the task, and the file must reach *ready* exactly
once: one ``files`` row, one archive object, no temporary leftover, one ``files.completed``.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import psycopg2
import pytest

pytestmark = pytest.mark.e2e

PASSPHRASE = "devstack-lega"  # the lega_keys connection's password in airflow_settings.yaml
SIZE_MB = 384


@pytest.fixture(autouse=True)
def _pause_ega_dags(airflow):
    yield
    for dag_id in ("ega_ingest", "ega_ingest_events"):
        airflow.api("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": True})


def _encrypt_large(path: Path, size_mb: int, node_pub: Path) -> None:
    """``size_mb`` MB of plaintext, encrypted in-process for the node key (crypt4gh.lib), to ``path``."""
    from crypt4gh import lib
    from crypt4gh.keys import get_public_key

    path.parent.mkdir(parents=True, exist_ok=True)
    plain = path.parent.parent / f".{path.name}.plain"
    block = os.urandom(4 << 20)
    with open(plain, "wb") as f:
        for _ in range(size_mb // 4):
            f.write(block)
    with open(plain, "rb") as fin, open(path, "wb") as fout:
        lib.encrypt([(0, bytes(range(32)), get_public_key(str(node_pub)))], fin, fout)
    plain.unlink()


def _holders(path: Path) -> list[int]:
    """The pids of the processes that have ``path`` open."""
    target = str(path.resolve())
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    found.append(int(pid))
                    break
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("PPid:"))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _ti(airflow, dag_id: str, run_id: str, task_id: str) -> dict:
    resp = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}")
    resp.raise_for_status()
    return resp.json()


def _db(airflow):
    return psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname=airflow.vars["SDP_LEGA_DB"])


def test_worker_killed_mid_ingest_is_retried_and_the_file_is_ready_once(airflow):
    from include.ega.keygen import ensure_keypair

    started = time.monotonic()
    local = Path(airflow.vars["SDP_LOCAL"]) / "lega"
    _, pub = ensure_keypair(local / "keys", PASSPHRASE)
    user, filepath = f"e2e-kill-{uuid.uuid4().hex[:8]}", "big/killed.c4gh"
    upload = local / "inbox" / user / filepath
    _encrypt_large(upload, SIZE_MB, pub)
    archive = local / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    before = set(os.listdir(archive))
    cega = f"http://127.0.0.1:{airflow.vars['SDP_CEGA_PORT']}"

    dag_id = "ega_ingest_file"
    airflow.wait_for_dags([dag_id])
    airflow.unpause(dag_id)
    resp = airflow.trigger(dag_id, {"user": user, "filepath": filepath})
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]

    # the ingest task is running (REST API); then the process reading the upload is the task's
    deadline = time.monotonic() + 180
    while _ti(airflow, dag_id, run_id, "ingest")["state"] != "running":
        assert time.monotonic() < deadline, airflow.task_states(dag_id, run_id)
        time.sleep(0.2)
    while not (holders := [p for p in _holders(upload) if _cmdline(p).startswith("airflow")]):
        state = _ti(airflow, dag_id, run_id, "ingest")["state"]
        assert state == "running" and time.monotonic() < deadline, f"ingest {state} before it was seen reading"
        time.sleep(0.02)
    [task_pid] = holders
    worker_pid = _ppid(task_pid)
    killed = {worker_pid: _cmdline(worker_pid), task_pid: _cmdline(task_pid)}
    assert all(cmd.startswith("airflow") for cmd in killed.values()), killed  # never anything else
    os.kill(worker_pid, signal.SIGKILL)  # the supervisor first: nobody reports the task's end
    os.kill(task_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    print(f"killed {killed} {killed_at - started:.1f}s after the start")

    with _db(airflow) as db, db.cursor() as cur:  # mid-ingest: nothing recorded yet
        cur.execute("SELECT status FROM files WHERE submission_user = %s AND filepath = %s", (user, filepath))
        assert cur.fetchall() == [("submitted",)]
    debris = [n for n in os.listdir(archive) if n.startswith(".tmp-")]

    result = airflow.wait(dag_id, run_id, timeout=240)
    assert result.state == "success", (result, result.explain())
    assert result.try_numbers["ingest"] >= 2, result.try_numbers
    history = airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/ingest/tries").json()
    first = next(t for t in history["task_instances"] if t["try_number"] == 1)
    assert first["state"] in ("failed", "up_for_retry"), first

    deadline = time.monotonic() + 60
    while not (done := httpx.get(f"{cega}/messages", params={"routing_key": "files.completed", "user": user},
                                 timeout=30).json()):
        assert time.monotonic() < deadline, "no files.completed at CEGA"
        time.sleep(1)
    time.sleep(2)  # a duplicate would follow at once
    done = httpx.get(f"{cega}/messages", params={"routing_key": "files.completed", "user": user}, timeout=30).json()
    assert [m["body"]["filepath"] for m in done] == [filepath]

    with _db(airflow) as db, db.cursor() as cur:
        cur.execute(
            "SELECT id, status, archive_path, archive_size FROM files WHERE submission_user = %s AND filepath = %s",
            (user, filepath),
        )
        [(file_id, status, archive_path, archive_size)] = cur.fetchall()
    assert status == "ready"
    after = set(os.listdir(archive))
    assert after - before == {archive_path}, sorted(after - before)
    assert not [n for n in after if n.startswith(".tmp-")]
    assert (archive / archive_path).stat().st_size == archive_size
    assert archive_size > SIZE_MB << 20
    print(f"debris after the kill: {debris}; recovered {time.monotonic() - killed_at:.1f}s after the kill; "
          f"file {file_id}; {time.monotonic() - started:.1f}s in all")
    upload.unlink()
