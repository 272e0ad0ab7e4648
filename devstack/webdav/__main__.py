"""``python -m devstack.webdav --port N --root DIR --users-file F``: WsgiDAV with basic auth."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socketserver
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from wsgidav.wsgidav_app import WsgiDAVApp


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, fmt, *args):
        logging.getLogger("devstack.webdav").info(fmt, *args)


def build_app(root: Path, users: dict[str, dict]) -> WsgiDAVApp:
    config = {
        "provider_mapping": {"/": str(root)},
        "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False,
                               "default_to_digest": False, "trusted_auth_header": None},
        "simple_dc": {"user_mapping": {"*": {name: {"password": u["password"]}
                                             for name, u in users.items()}}},
        "verbose": 1,
        "logging": {"enable": False, "enable_loggers": []},
        "lock_storage": True,
        "property_manager": True,
    }
    return WsgiDAVApp(config)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m devstack.webdav")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--users-file", type=Path, required=True, help="the iRODS stand-in's users file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s webdav %(levelname)s %(message)s")
    args.root.mkdir(parents=True, exist_ok=True)
    users = json.loads(args.users_file.read_text())["users"]
    server = make_server(args.host, args.port, build_app(args.root, users),
                         server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    logging.info("WebDAV on %s:%s for %d users", args.host, args.port, len(users))
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
