"""``python -m devstack.irods --port N --state-dir D --zone Z --users-file F [--keys-dir K]``.

The users file is JSON: ``{"users": {"name": {"password": "...", "type": "rodsuser"}},
"acls": {"/Z/some/collection": {"name": "own|write|read"}}, "inherit": ["/Z/some/collection"]}``
(without ``"inherit"``, every collection under ``"acls"`` inherits).
When it does not exist a development default is written (``rods`` admin, researchers ``alice`` and
``bob``, the streamer service account ``stager-streamer`` and the DAC collections of the local
settings). A DAC collection is set up as DCCN's repository sets it up: its manager owns it, the
streamer may write, and the inheritance flag is on, so that what the streamer creates below it gets
the collection's access rows (iRODS checks only an object's own rows; see ``catalog.py``).

``--keys-dir`` generates the stager's development RSA key pair (``stager.pem`` and
``stager.pub.pem``) there when missing; the ``stager_keys`` connection points at the file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path

from devstack.irods.catalog import Catalog
from devstack.irods.server import make_server

DEFAULT_USERS = {
    "users": {
        "rods": {"password": "rods", "type": "rodsadmin"},
        "alice": {"password": "alice-secret", "type": "rodsuser"},
        "bob": {"password": "bob-secret", "type": "rodsuser"},
        "stager-streamer": {"password": "streamer-secret", "type": "rodsuser"},
    },
    "acls": {
        "/{zone}/dccn/DAC_3010000.01": {"alice": "own", "stager-streamer": "write"},
        "/{zone}/dccn/DAC_3055000.01": {"bob": "own", "stager-streamer": "write"},
    },
    "inherit": ["/{zone}/dccn/DAC_3010000.01", "/{zone}/dccn/DAC_3055000.01"],
}


def ensure_keys(keys_dir: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = keys_dir / "stager.pem"
    if private.exists():
        return
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tmp = keys_dir / "stager.pem.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    (keys_dir / "stager.pub.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    os.replace(tmp, private)


def load_users(path: Path, zone: str) -> tuple[dict, dict, list[str]]:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(DEFAULT_USERS, indent=2))
    doc = json.loads(path.read_text())
    acls = {k.replace("{zone}", zone): v for k, v in doc.get("acls", {}).items()}
    # a file written before the "inherit" key existed: its shared collections inherit, as DAC collections do
    inherit = [k.replace("{zone}", zone) for k in doc.get("inherit", doc.get("acls", {}))]
    return doc["users"], acls, inherit


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m devstack.irods")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1247)
    ap.add_argument("--state-dir", type=Path, required=True)
    ap.add_argument("--zone", default="nl.ru.donders")
    ap.add_argument("--users-file", type=Path, required=True)
    ap.add_argument("--keys-dir", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s irods %(levelname)s %(message)s")
    if args.keys_dir:
        ensure_keys(args.keys_dir)
    users, acls, inherit = load_users(args.users_file, args.zone)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    cat = Catalog(args.state_dir, args.zone, users, acls, inherit)
    server = make_server(args.host, args.port, cat)
    stop = threading.Event()

    def saver():
        while not stop.wait(1.0):
            if cat.dirty:
                cat.save()

    threading.Thread(target=saver, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    logging.info("iRODS stand-in for zone %s on %s:%s", args.zone, args.host, args.port)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        cat.save()
        server.server_close()


if __name__ == "__main__":
    main()
