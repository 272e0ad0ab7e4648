"""Central EGA: which files.verified get an accession, over a real RabbitMQ.

Against the real Central EGA broker when ``CEGA_BROKER_URL`` is set (with ``CEGA_EXCHANGE``,
default ``localega``, and ``CEGA_ACCESSION_QUEUE``, the node's queue CEGA answers on), else against
the devstack stand-in on the machine's RabbitMQ with names of this test's own. A files.verified
that violates the federated schema (``ingestion-accession-request``) gets no accession.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pika
import pytest

from devstack.procs import free_port, port_open, stop_group

pytestmark = pytest.mark.contract

SHA = "82e4e60e7beb3db2e06a00a079788f7d71f75b61a4b75f28c4c942703dabb6d6"
MD5 = "7ac236b1a8dce2dac89e7cf45d2b48bd"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def cega(tmp_path_factory):
    if os.environ.get("CEGA_BROKER_URL"):
        yield {
            "url": os.environ["CEGA_BROKER_URL"],
            "exchange": os.environ.get("CEGA_EXCHANGE", "localega"),
            "accession_queue": os.environ["CEGA_ACCESSION_QUEUE"],
            "http": None,
        }
        return
    tag = uuid.uuid4().hex[:8]
    names = {"exchange": f"cega-{tag}", "files_queue": f"files-{tag}", "accession_queue": f"stableIDs-{tag}"}
    url = "amqp://guest:guest@127.0.0.1:5672/%2F"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "devstack.cega", "--port", str(port),
            "--state-dir", str(tmp_path_factory.mktemp("cega")), "--broker-url", url,
            "--exchange", names["exchange"], "--files-queue", names["files_queue"],
            "--accession-queue", names["accession_queue"],
        ],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not port_open(port):
        assert proc.poll() is None and time.monotonic() < deadline, "stand-in did not start"
        time.sleep(0.1)
    time.sleep(0.5)  # its consumer declares and binds its queue
    yield {"url": url, **names, "http": f"http://127.0.0.1:{port}"}
    stop_group(proc.pid, grace=5)
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    for q in (names["files_queue"], names["accession_queue"], f"{names['exchange']}.cega-stand-in.{port}"):
        ch.queue_delete(q)
    ch.exchange_delete(names["exchange"])
    conn.close()


def verified(user: str, checksums) -> dict:
    return {"user": user, "filepath": f"dir/{user}.c4gh", "decrypted_checksums": checksums}


BAD = {
    "no_checksums": {"user": "u", "filepath": "dir/x.c4gh"},
    "md5_only": verified("md5only", [{"type": "md5", "value": MD5}]),
    "bad_hex": verified("badhex", [{"type": "sha256", "value": "x" * 64}]),
    "extra_key": verified("extrakey", [{"type": "sha256", "value": SHA, "algo": "sha256"}]),
    "user_not_string": {**verified("n", [{"type": "sha256", "value": SHA}]), "user": 42},
}


def test_only_schema_valid_files_verified_get_an_accession(cega):
    conn = pika.BlockingConnection(pika.URLParameters(cega["url"]))
    ch = conn.channel()
    ch.queue_purge(cega["accession_queue"])
    sent: dict[str, str] = {}
    for name, body in [*BAD.items(), ("good", verified("good", [{"type": "sha256", "value": SHA}]))]:
        cid = str(uuid.uuid4())
        sent[cid] = name
        ch.basic_publish(
            exchange=cega["exchange"],
            routing_key="files.verified",
            body=json.dumps(body).encode(),
            properties=pika.BasicProperties(content_type="application/json", delivery_mode=2, correlation_id=cid),
        )
    answered: dict[str, dict] = {}
    deadline = time.monotonic() + 30
    while "good" not in answered and time.monotonic() < deadline:
        method, props, body = ch.basic_get(cega["accession_queue"], auto_ack=True)
        if method is None:
            time.sleep(0.2)
            continue
        if props.correlation_id in sent:
            answered[sent[props.correlation_id]] = json.loads(body)
    time.sleep(1.0)  # anything answered after the good one
    while (got := ch.basic_get(cega["accession_queue"], auto_ack=True))[0] is not None:
        if got[1].correlation_id in sent:
            answered[sent[got[1].correlation_id]] = json.loads(got[2])
    conn.close()
    assert "good" in answered, "the valid files.verified got no accession"
    assert answered["good"]["type"] == "accession" and answered["good"]["accession_id"].startswith("EGAF")
    assert set(answered) == {"good"}, f"accessions for invalid messages: {sorted(set(answered) - {'good'})}"
    if cega["http"]:  # the stand-in shows why it refused
        with urllib.request.urlopen(f"{cega['http']}/messages?routing_key=files.verified", timeout=10) as resp:
            seen = {m["correlation_id"]: m for m in json.loads(resp.read())}
        for cid, name in sent.items():
            assert bool(seen[cid].get("rejected")) is (name != "good"), name
