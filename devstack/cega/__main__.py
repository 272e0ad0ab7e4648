"""``python -m devstack.cega``: the Central EGA stand-in (server) or its CLI (``trigger`` ...).

Server: ``python -m devstack.cega --port 8091 --state-dir D --broker-url amqp://guest:guest@127.0.0.1:5672/%2F``
HTTP API (JSON):
    GET  /health
    POST /trigger     {"user", "filepath", "type": "ingest"|"cancel", "encrypted_checksums"?}
                      -> {"correlation_id"}; checksums are computed from --inbox-dir if not given
    POST /accession   {"user", "filepath", "accession_id"?, "decrypted_checksums", "correlation_id"?}
    POST /mapping     {"dataset_id"?, "accession_ids"}
    POST /publish     {"queue", "body" (any JSON or a string sent as is), "correlation_id"?}
    GET  /messages    ?routing_key=files.verified&correlation_id=...&user=...&filepath=...
    POST /auto-accession {"enabled": true|false}
CLI: ``python -m devstack.cega trigger --url http://127.0.0.1:8091 --user U --filepath P``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request

from devstack.cega.server import Cega, serve


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("trigger", "messages"):
        return cli(argv)
    p = argparse.ArgumentParser(
        prog="python -m devstack.cega",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=8091)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--state-dir", required=True)
    p.add_argument("--broker-url", default=os.environ.get("SDP_CEGA_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
                   help="default: $SDP_CEGA_BROKER_URL (keeps the password off argv)")
    p.add_argument("--exchange", default="cega")
    p.add_argument("--files-queue", default="files")
    p.add_argument("--accession-queue", default="stableIDs")
    p.add_argument("--inbox-dir", default=None, help="the inboxes' root, to compute encrypted checksums")
    p.add_argument(
        "--no-auto-accession",
        action="store_true",
        help="do not answer files.verified (tests or a real CEGA give accessions)",
    )
    a = p.parse_args(argv)
    cega = Cega(
        state_dir=a.state_dir,
        broker_url=a.broker_url,
        exchange=a.exchange,
        files_queue=a.files_queue,
        accession_queue=a.accession_queue,
        inbox_dir=a.inbox_dir,
        auto_accession=not a.no_auto_accession,
        instance=str(a.port),
    )
    serve(cega, a.host, a.port)
    return 0


def cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m devstack.cega")
    p.add_argument("command", choices=["trigger", "messages"])
    p.add_argument("--url", default="http://127.0.0.1:8091")
    p.add_argument("--user")
    p.add_argument("--filepath")
    p.add_argument("--type", default="ingest", choices=["ingest", "cancel"])
    p.add_argument("--routing-key")
    a = p.parse_args(argv)
    if a.command == "trigger":
        req = urllib.request.Request(
            f"{a.url}/trigger",
            method="POST",
            headers={"Content-Type": "application/json"},
            data=json.dumps({"user": a.user, "filepath": a.filepath, "type": a.type}).encode(),
        )
    else:
        q = f"?routing_key={a.routing_key}" if a.routing_key else ""
        req = urllib.request.Request(f"{a.url}/messages{q}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        print(resp.read().decode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
