"""EGA integration fixtures: a unique PostgreSQL database and unique AMQP names per test.

``node`` is one EGA node (the pipeline of include/ega over a real database and broker, with
POSIX inbox and archive) plus the test playing Central EGA on the other side of the broker.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pika
import psycopg2
import pytest

from include.ega.broker import Broker, BrokerSettings, declare
from include.ega.db import Database, create_database
from include.ega.pipeline import Pipeline, drain
from include.ega.storage import PosixArchive, PosixInbox
from tests.unit.include.ega.conftest import ega_keys  # noqa: F401 - fixture
from tests.unit.include.ega.support import encrypt_bytes

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}

pytestmark = pytest.mark.integration


@pytest.fixture
def pg():
    name = f"ega_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(**PG, dbname="postgres")
    create_database(admin, name)
    yield {**PG, "dbname": name}
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


@pytest.fixture
def amqp():
    sfx = uuid.uuid4().hex[:10]
    s = BrokerSettings(
        exchange=f"cega_{sfx}",
        files_queue=f"files_{sfx}",
        accession_queue=f"stableIDs_{sfx}",
        dead_letter_queue=f"dead_{sfx}",
    )
    conn = pika.BlockingConnection(s.parameters())
    ch = conn.channel()
    declare(ch, s)
    capture = f"cega_out_{sfx}"
    ch.queue_declare(queue=capture, durable=False, auto_delete=False)
    ch.queue_bind(queue=capture, exchange=s.exchange, routing_key="files.#")
    conn.close()
    yield s
    conn = pika.BlockingConnection(s.parameters())
    ch = conn.channel()
    for q in (s.files_queue, s.accession_queue, s.dead_letter_queue, capture):
        ch.queue_delete(queue=q)
    ch.exchange_delete(exchange=s.exchange)
    conn.close()


class CentralEga:
    """The test's side of the broker: sends triggers and accessions, reads what the node sent."""

    def __init__(self, s: BrokerSettings):
        self.s = s
        self.capture = f"cega_out_{s.exchange.split('_', 1)[1]}"
        self.received: list[dict] = []
        self.dead: list[dict] = []

    def _channel(self):
        conn = pika.BlockingConnection(self.s.parameters())
        return conn, conn.channel()

    def send(self, queue: str, body: bytes | dict, correlation_id: str | None = None) -> str:
        cid = correlation_id or str(uuid.uuid4())
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        conn, ch = self._channel()
        ch.basic_publish("", queue, raw, pika.BasicProperties(correlation_id=cid, delivery_mode=2))
        conn.close()
        return cid

    def trigger(self, user: str, filepath: str, kind: str = "ingest", **extra) -> str:
        return self.send(self.s.files_queue, {"type": kind, "user": user, "filepath": filepath, **extra})

    def accession(self, user: str, filepath: str, accession_id: str, checksums: list, cid: str | None = None) -> str:
        return self.send(
            self.s.accession_queue,
            {
                "type": "accession",
                "user": user,
                "filepath": filepath,
                "accession_id": accession_id,
                "decrypted_checksums": checksums,
            },
            cid,
        )

    def _take(self, queue: str) -> list[dict]:
        conn, ch = self._channel()
        out = []
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            out.append(
                {
                    "routing_key": method.routing_key,
                    "correlation_id": props.correlation_id,
                    "body": json.loads(body),
                }
            )
        conn.close()
        return out

    def messages(self, routing_key: str | None = None) -> list[dict]:
        self.received += self._take(self.capture)
        return [m for m in self.received if routing_key is None or m["routing_key"] == routing_key]

    def dead_letters(self) -> list[dict]:
        self.dead += self._take(self.s.dead_letter_queue)
        return self.dead

    def answer_verified(self, accession_of=None) -> int:
        """Answer every files.verified not answered yet with an accession id."""
        n = 0
        for m in self.messages("files.verified"):
            if m.get("answered"):
                continue
            m["answered"] = True
            b = m["body"]
            acc = (accession_of or _accession)(b["user"], b["filepath"])
            self.accession(b["user"], b["filepath"], acc, b["decrypted_checksums"], m["correlation_id"])
            n += 1
        return n


def _accession(user: str, filepath: str) -> str:
    return "EGAF" + str(int(uuid.uuid5(uuid.NAMESPACE_URL, f"{user}/{filepath}").int % 10**11)).zfill(11)


class Node:
    def __init__(self, root: Path, pg: dict, amqp: BrokerSettings, keys: dict):
        self.root = root
        self.inbox_dir = root / "inbox"
        self.archive_dir = root / "archive"
        self.keys = keys
        self.pg = pg
        self.db = Database(lambda: psycopg2.connect(**pg))
        self.db.migrate()
        self.broker = Broker(amqp)
        self.archive = PosixArchive(self.archive_dir)
        self.pipeline = Pipeline(
            self.db,
            PosixInbox(self.inbox_dir),
            self.archive,
            lambda: [keys["old"].seckey, keys["node"].seckey],
            self.broker.publish,
        )
        self.cega = CentralEga(amqp)

    def upload(self, user: str, filepath: str, data: bytes, encrypt: bool = True, recipients=None) -> bytes:
        path = self.inbox_dir / user / filepath
        path.parent.mkdir(parents=True, exist_ok=True)
        if encrypt:
            data = encrypt_bytes(data, self.keys["user"], *(recipients or [self.keys["node"]]))
        path.write_bytes(data)
        return data

    def drain(self, max_messages: int = 100) -> list[str]:
        return drain(self.pipeline, self.broker, max_messages, stale_after=3600)

    def run(self, rounds: int = 3):
        """What the DAG does: drain, ingest+verify, CEGA answers, accession; a few rounds."""
        results = []
        for _ in range(rounds):
            ids = self.drain()
            results.append(self.pipeline.process(ids, ("ingest", "verify", "accession")))
            if not self.cega.answer_verified() and not ids:
                break
        return results

    def file(self, user: str, filepath: str):
        with psycopg2.connect(**self.pg) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT id FROM files WHERE submission_user = %s AND filepath = %s ORDER BY created_at",
                (user, filepath),
            )
            ids = [str(r[0]) for r in cur.fetchall()]
        return [self.db.get(i) for i in ids]

    def sql(self, query: str, *args):
        with psycopg2.connect(**self.pg) as conn, conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None

    def events(self, file_id: str) -> list[dict]:
        """A file's event log, oldest first."""
        rows = self.sql("SELECT event, correlation_id, message FROM file_events WHERE file_id = %s ORDER BY id", file_id)
        return [{"event": e, "correlation_id": c, "message": m} for e, c, m in rows]

    def dataset_files(self, dataset_id: str) -> list[str]:
        rows = self.sql("SELECT file_id FROM dataset_files WHERE dataset_id = %s ORDER BY file_id", dataset_id)
        return [str(r[0]) for r in rows]

    def archive_files(self) -> list[str]:
        return sorted(p.name for p in self.archive_dir.iterdir()) if self.archive_dir.exists() else []

    def close(self):
        self.broker.close()
        self.db.close()


@pytest.fixture
def node(tmp_path, pg, amqp, ega_keys):  # noqa: F811
    n = Node(tmp_path, pg, amqp, ega_keys)
    yield n
    n.close()
