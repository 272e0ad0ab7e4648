"""A small real HTTP server for the hooks and triggers: each test sets the answers of its paths."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Answers:
    def __init__(self):
        self.routes: dict[tuple[str, str], list[tuple[int, bytes, str]]] = {}
        self.seen: list[tuple[str, str, dict]] = []

    def set(self, method: str, path: str, *answers: tuple[int, object]) -> None:
        """The answers to ``method path``, in turn (the last one repeats)."""
        out = []
        for status, body in answers:
            if isinstance(body, (dict, list)):
                out.append((status, json.dumps(body).encode(), "application/json"))
            else:
                out.append((status, str(body).encode(), "text/html"))
        self.routes[(method, path)] = out


@pytest.fixture
def http_server():
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            answers.seen.append((self.command, self.path, dict(self.headers)))
            queue = answers.routes.get((self.command, self.path.split("?")[0]))
            status, body, ctype = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else (404, b"", "text/plain")
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    answers.port = server.server_address[1]
    yield answers
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port():
    """A port nobody listens on (bound, then closed)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
