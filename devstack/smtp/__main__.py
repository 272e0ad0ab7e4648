"""``python -m devstack.smtp --port N --http-port M --state-dir D``."""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import logging
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller

log = logging.getLogger("devstack.smtp")


class Store:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()

    def add(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> str:
        with self.lock:
            name = f"{time.time_ns()}.eml"
            tmp = self.root / (name + ".tmp")
            envelope = f"X-Envelope-From: {mail_from}\r\nX-Envelope-To: {', '.join(rcpt_tos)}\r\n".encode()
            tmp.write_bytes(envelope + data)
            os.replace(tmp, self.root / name)
        return name

    def list(self) -> list[dict]:
        out = []
        for path in sorted(self.root.glob("*.eml")):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            out.append({"id": path.name, "from": msg.get("From", ""), "to": msg.get("To", ""),
                        "cc": msg.get("Cc", ""), "subject": msg.get("Subject", ""),
                        "date": msg.get("Date", ""),
                        "envelope_to": msg.get("X-Envelope-To", "")})
        return out


class Handler:
    def __init__(self, store: Store):
        self.store = store

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        data = envelope.original_content or envelope.content
        name = self.store.add(envelope.mail_from, envelope.rcpt_tos, data)
        log.info("stored %s for %s", name, envelope.rcpt_tos)
        return "250 Message accepted for delivery"


def http_handler(store: Store):
    class H(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802
            if self.path.rstrip("/") == "/messages":
                return self._send(200, json.dumps(store.list()).encode(), "application/json")
            if self.path.startswith("/messages/"):
                path = store.root / os.path.basename(self.path)
                if path.suffix == ".eml" and path.exists():
                    return self._send(200, path.read_bytes(), "message/rfc822")
            return self._send(404, b"not found", "text/plain")

        def do_DELETE(self):  # noqa: N802
            for path in store.root.glob("*.eml"):
                path.unlink(missing_ok=True)
            return self._send(204, b"", "text/plain")

        def log_message(self, fmt, *args):
            log.debug(fmt, *args)

    return H


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m devstack.smtp")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--state-dir", type=Path, required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s smtp %(levelname)s %(message)s")
    store = Store(args.state_dir / "mails")
    httpd = ThreadingHTTPServer((args.host, args.http_port), http_handler(store))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    # the SMTP port opens last: when it accepts connections (the readiness check) HTTP is up too
    controller = Controller(Handler(store), hostname=args.host, port=args.port)
    controller.start()
    log.info("SMTP on %s:%s, messages over HTTP on %s", args.host, args.port, args.http_port)
    stop.wait()
    httpd.shutdown()
    controller.stop()


if __name__ == "__main__":
    main()
