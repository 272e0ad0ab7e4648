"""The Central EGA stand-in: an HTTP API, an AMQP consumer of the node's messages, auto-accession."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pika

from devstack.cega.checks import accession_request_errors

log = logging.getLogger("devstack.cega")


class Cega:
    def __init__(
        self,
        *,
        state_dir: str,
        broker_url: str,
        exchange: str = "cega",
        files_queue: str = "files",
        accession_queue: str = "stableIDs",
        inbox_dir: str | None = None,
        auto_accession: bool = True,
        instance: str = "",
    ):
        self.state = Path(state_dir)
        self.state.mkdir(parents=True, exist_ok=True)
        self.broker_url = broker_url
        self.exchange = exchange
        self.files_queue = files_queue
        self.accession_queue = accession_queue
        # one queue per stand-in instance: several stacks may share one RabbitMQ; each stand-in sees
        # every message of the exchange, and they all give a file the same accession id
        self.received_queue = f"{exchange}.cega-stand-in.{instance or os.getpid()}"
        self.inbox_dir = inbox_dir
        self.auto_accession = auto_accession
        self.lock = threading.Lock()
        self.messages_file = self.state / "received.jsonl"
        self.stop = threading.Event()

    # -- broker --------------------------------------------------------------------------
    def _connection(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.URLParameters(self.broker_url))

    def declare(self, ch) -> None:
        ch.exchange_declare(exchange=self.exchange, exchange_type="topic", durable=True)
        for q in (self.files_queue, self.accession_queue):
            ch.queue_declare(queue=q, durable=True)
        ch.queue_declare(queue=self.received_queue, durable=True, arguments={"x-expires": 3_600_000})
        ch.queue_bind(queue=self.received_queue, exchange=self.exchange, routing_key="files.#")

    def publish(self, queue: str, body: bytes, correlation_id: str | None = None) -> str:
        correlation_id = correlation_id or str(uuid.uuid4())
        conn = self._connection()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            self.declare(ch)
            ch.basic_publish(
                exchange="",
                routing_key=queue,
                body=body,
                properties=pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, correlation_id=correlation_id
                ),
            )
        finally:
            conn.close()
        self._record({"direction": "sent", "queue": queue, "correlation_id": correlation_id, "body": _maybe_json(body)})
        return correlation_id

    def consume_forever(self) -> None:
        while not self.stop.is_set():
            try:
                conn = self._connection()
                ch = conn.channel()
                self.declare(ch)
                ch.basic_qos(prefetch_count=10)
                ch.basic_consume(queue=self.received_queue, on_message_callback=self._on_message)
                log.info("consuming %s", self.received_queue)
                while not self.stop.is_set():
                    conn.process_data_events(time_limit=1)
                conn.close()
            except Exception as exc:  # noqa: BLE001 - broker restarts: reconnect
                log.warning("broker: %s; reconnecting", exc)
                time.sleep(1)

    def _on_message(self, ch, method, props, body) -> None:
        entry = {
            "direction": "received",
            "routing_key": method.routing_key,
            "correlation_id": props.correlation_id,
            "body": _maybe_json(body),
        }
        if method.routing_key == "files.verified":
            errors = accession_request_errors(entry["body"])
            if errors:
                # Central EGA answers only a files.verified that follows the federated schema
                # (ingestion-accession-request). Its own code is not public; the stand-in does
                # what SDA does with an incoming message that fails validation (e.g.
                # sda/cmd/finalize/finalize.go): log it, acknowledge it, answer nothing. The
                # node sees no accession; /messages shows the message with its "rejected" reasons.
                entry["rejected"] = errors
                log.warning("files.verified refused (no accession): %s", "; ".join(errors))
        self._record(entry)
        if (
            method.routing_key == "files.verified"
            and self.auto_accession
            and isinstance(entry["body"], dict)
            and not entry.get("rejected")
        ):
            msg = entry["body"]
            accession = {
                "type": "accession",
                "user": msg.get("user"),
                "filepath": msg.get("filepath"),
                "accession_id": self.accession_for(msg.get("user"), msg.get("filepath")),
                "decrypted_checksums": msg.get("decrypted_checksums", []),
            }
            ch.basic_publish(
                exchange="",
                routing_key=self.accession_queue,
                body=json.dumps(accession).encode(),
                properties=pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, correlation_id=props.correlation_id
                ),
            )
            self._record(
                {
                    "direction": "sent",
                    "queue": self.accession_queue,
                    "correlation_id": props.correlation_id,
                    "body": accession,
                }
            )
        ch.basic_ack(method.delivery_tag)

    # -- state ---------------------------------------------------------------------------
    @staticmethod
    def accession_for(user: str, filepath: str) -> str:
        """The same stable ID for the same user and path, from any stand-in (EGAF + 11 digits)."""
        digest = hashlib.sha256(f"{user}\0{filepath}".encode()).digest()
        return f"EGAF{int.from_bytes(digest[:8], 'big') % 10**11:011d}"

    def _record(self, entry: dict) -> None:
        entry["at"] = time.time()
        with self.lock, open(self.messages_file, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def messages(self, **filters: str) -> list[dict]:
        if not self.messages_file.exists():
            return []
        with self.lock:
            lines = self.messages_file.read_text().splitlines()
        out = []
        for line in lines:
            m = json.loads(line)
            body = m.get("body") if isinstance(m.get("body"), dict) else {}
            if filters.get("routing_key") and m.get("routing_key") != filters["routing_key"]:
                continue
            if filters.get("correlation_id") and m.get("correlation_id") != filters["correlation_id"]:
                continue
            if filters.get("user") and body.get("user") != filters["user"]:
                continue
            if filters.get("filepath") and body.get("filepath") != filters["filepath"]:
                continue
            out.append(m)
        return out

    def encrypted_checksums(self, user: str, filepath: str) -> list[dict] | None:
        if not self.inbox_dir:
            return None
        path = Path(self.inbox_dir) / user / filepath
        if not path.is_file():
            return None
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return [{"type": "sha256", "value": h.hexdigest()}]


def _maybe_json(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def make_handler(cega: Cega):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):  # quieter
            log.info("%s " + fmt, self.address_string(), *args)

        def _json(self, code: int, obj) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def do_GET(self):  # noqa: N802
            url = urlparse(self.path)
            if url.path == "/health":
                return self._json(200, {"status": "ok", "auto_accession": cega.auto_accession})
            if url.path == "/messages":
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                return self._json(200, cega.messages(**q))
            return self._json(404, {"error": "not found"})

        def do_POST(self):  # noqa: N802
            url = urlparse(self.path)
            try:
                req = self._body()
            except ValueError:
                return self._json(400, {"error": "body is not JSON"})
            try:
                if url.path == "/trigger":
                    msg = {
                        "type": req.get("type", "ingest"),
                        "user": req["user"],
                        "filepath": req["filepath"],
                    }
                    sums = req.get("encrypted_checksums") or (
                        cega.encrypted_checksums(req["user"], req["filepath"]) if msg["type"] == "ingest" else None
                    )
                    if sums:
                        msg["encrypted_checksums"] = sums
                    cid = cega.publish(cega.files_queue, json.dumps(msg).encode(), req.get("correlation_id"))
                    return self._json(200, {"correlation_id": cid, "message": msg})
                if url.path == "/accession":
                    msg = {
                        "type": "accession",
                        "user": req["user"],
                        "filepath": req["filepath"],
                        "accession_id": req.get("accession_id") or cega.accession_for(req["user"], req["filepath"]),
                        "decrypted_checksums": req.get("decrypted_checksums", []),
                    }
                    cid = cega.publish(cega.accession_queue, json.dumps(msg).encode(), req.get("correlation_id"))
                    return self._json(200, {"correlation_id": cid, "message": msg})
                if url.path == "/mapping":
                    msg = {
                        "type": "mapping",
                        "dataset_id": req.get("dataset_id") or f"EGAD{random.randrange(10**11):011d}",  # noqa: S311
                        "accession_ids": req["accession_ids"],
                    }
                    cid = cega.publish(cega.files_queue, json.dumps(msg).encode(), req.get("correlation_id"))
                    return self._json(200, {"correlation_id": cid, "message": msg})
                if url.path == "/publish":
                    body = req["body"]
                    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                    cid = cega.publish(req["queue"], raw, req.get("correlation_id"))
                    return self._json(200, {"correlation_id": cid})
                if url.path == "/auto-accession":
                    cega.auto_accession = bool(req.get("enabled", True))
                    return self._json(200, {"auto_accession": cega.auto_accession})
            except KeyError as exc:
                return self._json(400, {"error": f"missing field {exc}"})
            except pika.exceptions.AMQPError as exc:
                return self._json(503, {"error": f"broker: {exc}"})
            return self._json(404, {"error": "not found"})

    return Handler


def serve(cega: Cega, host: str, port: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    consumer = threading.Thread(target=cega.consume_forever, daemon=True)
    consumer.start()
    server = ThreadingHTTPServer((host, port), make_handler(cega))
    log.info("Central EGA stand-in on http://%s:%d (auto-accession: %s)", host, port, cega.auto_accession)
    try:
        server.serve_forever()
    finally:
        cega.stop.set()
        server.server_close()
