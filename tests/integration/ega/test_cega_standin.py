"""The Central EGA stand-in (devstack/cega) against the node's pipeline, over real RabbitMQ."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from devstack.procs import free_port, port_open, stop_group
from devstack.registry import SERVICES
from tests.unit.include.ega.support import ROOT

pytestmark = pytest.mark.integration

U = "standin.user"


def http(port, method, path, body=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def standin(node, tmp_path):
    def start(*extra):
        port = free_port()
        s = node.cega.s
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack.cega",
                "--port",
                str(port),
                "--state-dir",
                str(tmp_path / "cega"),
                "--broker-url",
                "amqp://guest:guest@127.0.0.1:5672/%2F",
                "--exchange",
                s.exchange,
                "--files-queue",
                s.files_queue,
                "--accession-queue",
                s.accession_queue,
                "--inbox-dir",
                str(node.inbox_dir),
                *extra,
            ],
            cwd=ROOT,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert proc.poll() is None and time.monotonic() < deadline, "stand-in did not start"
            time.sleep(0.1)
        time.sleep(0.5)  # its consumer declares and binds its queue
        return port

    procs: list = []
    yield start
    for p in procs:
        stop_group(p.pid, grace=5)


def wait_for(fn, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := fn():
            return result
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_standin_triggers_and_answers_with_an_accession(node, standin):
    port = standin()
    assert http(port, "GET", "/health")["auto_accession"] is True
    data = node.upload(U, "dir/s.c4gh", b"stand-in" * 1000)
    sent = http(port, "POST", "/trigger", {"user": U, "filepath": "dir/s.c4gh"})
    import hashlib

    assert sent["message"]["encrypted_checksums"] == [{"type": "sha256", "value": hashlib.sha256(data).hexdigest()}]
    [fid] = wait_for(node.drain)
    node.pipeline.process([fid], ("ingest", "verify"))
    # the stand-in answers files.verified with an accession in stableIDs, same correlation id
    wait_for(lambda: node.drain() == [fid] and node.pipeline.accession(fid) == "ready")
    rec = node.db.get(fid)
    assert rec.accession_id.startswith("EGAF") and len(rec.accession_id) == 15
    got = wait_for(lambda: http(port, "GET", "/messages?routing_key=files.completed"))
    assert got[0]["correlation_id"] == sent["correlation_id"] == rec.correlation_id
    assert got[0]["body"]["accession_id"] == rec.accession_id
    verified = http(port, "GET", f"/messages?routing_key=files.verified&correlation_id={sent['correlation_id']}")
    assert len(verified) == 1
    # a mapping through the stand-in
    http(port, "POST", "/mapping", {"dataset_id": "EGAD00000000042", "accession_ids": [rec.accession_id]})
    wait_for(lambda: node.drain() is not None and node.dataset_files("EGAD00000000042") == [fid])


def test_standin_can_leave_accessions_to_the_test(node, standin):
    port = standin("--no-auto-accession")
    node.upload(U, "n.c4gh", b"no auto")
    http(port, "POST", "/trigger", {"user": U, "filepath": "n.c4gh"})
    [fid] = wait_for(node.drain)
    node.pipeline.process([fid], ("ingest", "verify"))
    wait_for(lambda: http(port, "GET", "/messages?routing_key=files.verified"))
    time.sleep(0.5)
    node.drain()
    assert node.pipeline.accession(fid) == "verified"
    rec = node.db.get(fid)
    http(
        port,
        "POST",
        "/accession",
        {
            "user": U,
            "filepath": "n.c4gh",
            "accession_id": "EGAF00000000099",
            "decrypted_checksums": [{"type": "sha256", "value": rec.checksums["decrypted"]["sha256"]}],
        },
    )
    wait_for(lambda: node.drain() is not None and node.pipeline.accession(fid) == "ready")
    assert node.db.get(fid).accession_id == "EGAF00000000099"


def test_cli_trigger(node, standin):
    port = standin()
    node.upload(U, "cli.c4gh", b"cli")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.cega",
            "trigger",
            "--url",
            f"http://127.0.0.1:{port}",
            "--user",
            U,
            "--filepath",
            "cli.c4gh",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["message"]["filepath"] == "cli.c4gh"
    assert len(wait_for(node.drain)) == 1


def test_registry_entry():
    svc = SERVICES["cega"]
    assert svc.port_var == "SDP_CEGA_PORT" and svc.default_port == 8091
    argv = [a.format(SDP_CEGA_PORT="1", state="/s", local="/l", python="py", **svc.names) for a in svc.argv]
    assert argv[:3] == ["py", "-m", "devstack.cega"] and "/l/lega/inbox" in argv
    # the stand-in talks on the same names the lega_broker connection gives the pipeline
    for flag, var in (("--exchange", "SDP_LEGA_EXCHANGE"), ("--files-queue", "SDP_LEGA_FILES_QUEUE"),
                      ("--accession-queue", "SDP_LEGA_ACCESSION_QUEUE")):
        assert argv[argv.index(flag) + 1] == svc.names[var]


def test_accession_ids_are_the_same_from_every_standin():
    from devstack.cega.server import Cega

    a = Cega.accession_for("u", "dir/f.c4gh")
    assert a == Cega.accession_for("u", "dir/f.c4gh") != Cega.accession_for("u", "dir/g.c4gh")
    assert a.startswith("EGAF") and len(a) == 15 and a[4:].isdigit()
